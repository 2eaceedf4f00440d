"""A smoke test of ``bench.journal_contention``: it runs with tiny counts and reports every case with numbers.
Its figures are not judged here (see bench/RESULTS.md)."""

import re
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_smoke_bench_journal_contention_reports_every_case_without_errors():
    result = subprocess.run([sys.executable, "-m", "bench.journal_contention", "--lines", "200", "--threads", "4"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = re.findall(r"^\| (log line|metrics samples[^|]*|nothing[^|]*) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$",
                      result.stdout, re.MULTILINE)
    assert [row[0].split(" ")[0] for row in rows] == ["log", "metrics", "nothing"], result.stdout
    assert all(float(row[1]) > 0 and float(row[2]) > 0 for row in rows)

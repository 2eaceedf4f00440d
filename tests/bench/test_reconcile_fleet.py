"""A smoke test of ``bench.reconcile_fleet``: a small fleet at two sizes, every planted case fixed by the first
pass and nothing left by the second (the bench exits 1 otherwise), calls counted per system. Its figures are not
judged here (see bench/RESULTS.md)."""

import re
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_smoke_bench_reconcile_fleet_fixes_every_planted_case_once_and_counts_calls_per_system():
    result = subprocess.run([sys.executable, "-m", "bench.reconcile_fleet", "--sizes", "20,40", "--planted", "2"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = re.findall(r"^\| ([\d,]+) \| (\d) \| ([\d.]+) \| ([\d.]+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|"
                      r" ([\d-]+) \|$", result.stdout, re.MULTILINE)
    assert [(row[0], row[1]) for row in rows] == [("20", "1"), ("20", "2"), ("40", "1"), ("40", "2")], result.stdout
    assert all(int(row[4]) > 0 and int(row[5]) > 0 and int(row[6]) > 0 and int(row[7]) > 0 for row in rows)
    assert [row[8] for row in rows] == ["12", "0", "12", "0"]

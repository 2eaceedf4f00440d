"""The benchmark script runs end to end (tiny counts; its figures are not judged here)."""

import re
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_bench_bridge_ack_runs_and_reports_every_phase():
    result = subprocess.run(
        [sys.executable, "-m", "bench.bridge_ack", "--requests", "60", "--concurrency", "4", "--rate", "20",
         "--seconds", "1", "--fast-ms", "5", "--slow-ms", "50"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode in (0, 1), result.stderr[-2000:]
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if re.match(r"\| (closed loop|20/s):", line)]
    assert len(rows) == 5, result.stdout
    assert all(row[6].strip() == "0" for row in rows), result.stdout  # the errors column
    assert "deliveries recorded" in result.stdout

"""A smoke test of ``bench.dag_parse``: one round over a DAG file and the empty DAG, both ways of parsing."""

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT


def run_bench(dags: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.dag_parse", "--rounds", "1", "--dags", str(dags)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)


def test_smoke_bench_dag_parse_times_a_dag_file_against_the_empty_dag_both_ways(tmp_path: Path):
    (tmp_path / "vdi_provision.py").symlink_to(REPO_ROOT / "dags" / "vdi_provision.py")
    result = run_bench(tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = re.findall(r"^\| (\S+\.py) \| (stack|bare) \| \d+ \| \d+ \| \d+ \| ([\d.]+) \|$", result.stdout,
                      re.MULTILINE)
    assert sorted((name, setting) for name, setting, _ in rows) == [
        ("empty_dag.py", "bare"), ("empty_dag.py", "stack"), ("one_task_dag.py", "bare"),
        ("one_task_dag.py", "stack"), ("vdi_provision.py", "bare"), ("vdi_provision.py", "stack")], result.stdout
    assert all(float(ratio) == 1.0 for name, _, ratio in rows if name == "empty_dag.py")
    assert all(float(ratio) > 0 for _, _, ratio in rows)


def test_an_unparsable_dag_file_fails_the_bench(tmp_path: Path):
    (tmp_path / "broken.py").write_text("raise RuntimeError('no DAG here')\n")
    result = run_bench(tmp_path)
    assert result.returncode != 0
    assert "broken.py did not parse" in result.stderr

"""``bench.burst``: its floor DAG has ``vdi_provision``'s shape, and a smoke run (two tickets through a stack of its
own) ends with every request ready and nothing twice. Its figures are not judged here (see bench/RESULTS.md)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.burst import FLOOR_DAG_FILE, percentile
from tests.conftest import REPO_ROOT


def shape(dag) -> dict[str, tuple]:
    return {t.task_id: (sorted(t.upstream_task_ids), t.pool, t.priority_weight, str(t.weight_rule),
                        type(t).__name__.startswith("_ShortCircuit")) for t in dag.tasks}


def test_the_floor_dag_has_the_shape_of_vdi_provision_and_is_not_in_the_dags_folder():
    from airflow.dag_processing.dagbag import DagBag

    floor = DagBag(dag_folder=str(FLOOR_DAG_FILE)).dags["vdi_provision_floor"]
    product = DagBag(dag_folder=str(REPO_ROOT / "dags" / "vdi_provision.py")).dags["vdi_provision"]
    assert shape(floor) == shape(product)
    assert floor.max_active_runs == product.max_active_runs
    assert not (REPO_ROOT / "dags" / FLOOR_DAG_FILE.name).exists()


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 100)) == (50.0, 95.0, 100.0)
    assert percentile([3.0], 95) == 3.0


@pytest.mark.e2e
@pytest.mark.slow
def test_smoke_a_burst_of_two_tickets_ends_ready_with_one_of_everything(tmp_path):
    out = tmp_path / "burst.json"
    result = subprocess.run([sys.executable, "-m", "bench.burst", "--tickets", "2", "--no-warmup",
                             "--deadline-s", "300", "--json", str(out), "--plot", str(tmp_path / "burst.png")],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=840)
    assert result.returncode in (0, 3), result.stdout[-3000:] + result.stderr[-3000:]  # 3: a ratio missed
    figures = json.loads(out.read_text())
    assert figures["not_ready"] == []
    assert {k: v for k, v in figures["problems"].items() if k != "retried tasks"} == {}
    assert len(figures["burst"]["latencies_s"]) == len(figures["floor"]["latencies_s"]) == 2
    assert all(value > 0 for value in figures["burst"]["latencies_s"] + figures["burst"]["overhead_s"])
    assert (tmp_path / "burst.png").stat().st_size > 0

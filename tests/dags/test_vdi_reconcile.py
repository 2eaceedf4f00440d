"""vdi_reconcile is wired as its settings say: scheduled, one run at a time, no catch-up, a dry_run param,
bounded tasks, and a last task ``report`` that runs whatever the parts did."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import REPO_ROOT
from vdi.settings import load


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "vdi_reconcile.py"))
    assert bag.import_errors == {}
    return bag.dags["vdi_reconcile"]


def test_it_runs_on_the_configured_schedule_one_run_at_a_time_without_catching_up(dag):
    assert dag.schedule == load().reconcile_schedule
    assert (dag.max_active_runs, dag.catchup) == (1, False)
    assert dag.doc_md and "dry_run" in dag.doc_md
    assert dag.params["dry_run"] is False


def test_every_task_is_bounded_and_the_report_comes_last_whatever_the_parts_did(dag):
    assert all(task.execution_timeout == timedelta(seconds=load().task_timeout_s) for task in dag.tasks)
    report = dag.get_task("report")
    assert report.trigger_rule == "all_done" and not report.downstream_task_ids
    assert report.upstream_task_ids == {t.task_id for t in dag.tasks} - {"report"}


def test_lost_webhooks_are_recorded_before_the_deliveries_part_hands_out_pending_ones(dag):
    assert "lost_webhooks" in dag.get_task("deliveries").upstream_task_ids
    assert dag.get_task("deliveries").trigger_rule == "all_done"
    assert dag.get_task("trigger_deliveries").upstream_task_ids == {"deliveries"}
    assert dag.get_task("reprovision").upstream_task_ids == {"drift"}

"""vdi_deprovision is wired as its steps, settings and pools say, and its file loads cheaply."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from vdi.dag_defaults import sensor_settings, task_defaults
from vdi.steps import RemovalStep

DAG_FILE = REPO_ROOT / "dags" / "vdi_deprovision.py"
STEP_POOLS = {
    RemovalStep.CLAIM: "jira_api", RemovalStep.RESOLVE: "jira_api", RemovalStep.REMOVE_FROM_BROKER: "leostream_api",
    RemovalStep.STOP_INSTANCES: "aws_api", RemovalStep.TERMINATE_INSTANCES: "aws_api", RemovalStep.FINISH: "jira_api",
}


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}
    return bag.dags["vdi_deprovision"]


def test_the_steps_run_one_after_another_in_order(dag):
    order = list(RemovalStep)
    assert sorted(t.task_id for t in dag.tasks) == sorted(step.value for step in order)
    for before, after in zip(order, order[1:]):
        assert dag.get_task(after.value).upstream_task_ids == {before.value} | (
            {RemovalStep.CLAIM.value} if after != RemovalStep.RESOLVE else set()), after


def test_every_task_is_bounded_retried_pooled_and_reports_its_last_failure(dag):
    defaults = task_defaults()
    for task in dag.tasks:
        assert (task.retries, task.execution_timeout) == (defaults["retries"], defaults["execution_timeout"])
        assert task.pool == STEP_POOLS[RemovalStep(task.task_id)], task.task_id
        callbacks = task.on_failure_callback if isinstance(task.on_failure_callback, list) else [
            task.on_failure_callback]
        assert [c.__name__ for c in callbacks] == ["on_task_failure"], task.task_id
    declared = json.loads((REPO_ROOT / "include" / "airflow_pools.json").read_text())
    assert set(STEP_POOLS.values()) <= set(declared)


def test_the_wait_for_the_instances_to_stop_holds_no_worker_slot(dag):
    timing = sensor_settings()
    sensor = dag.get_task(RemovalStep.STOP_INSTANCES.value)
    assert (sensor.mode, sensor.poke_interval, sensor.timeout) == (
        "reschedule", timing["poke_interval"], timing["timeout"])


def test_the_run_is_triggered_only_and_a_bad_issue_key_is_refused(dag):
    from airflow.sdk.definitions.param import process_params
    from airflow.sdk.exceptions import ParamValidationError

    assert type(dag.timetable).__name__ == "NullTimetable" and dag.doc_md.strip().startswith("### vdi_deprovision")
    task = dag.get_task(RemovalStep.CLAIM.value)
    conf = {"issue_key": "VDI-7", "delivery_id": "d-1", "event": "jira:issue_created"}
    assert process_params(dag, task, conf, suppress_exception=False) == conf
    with pytest.raises(ParamValidationError):
        process_params(dag, task, {"issue_key": "vdi-7; drop"}, suppress_exception=False)


def test_the_dag_file_imports_nothing_heavy_at_parse():
    script = (
        "import json, runpy, sys\n"
        "import airflow.sdk\n"
        "before = set(sys.modules)\n"
        f"runpy.run_path({str(DAG_FILE)!r})\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    added = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert not {m.split(".")[0] for m in added} & {"psycopg", "boto3", "botocore", "atlassian", "requests", "jinja2"}
    assert "vdi.deprovision" not in added and "vdi.provision" not in added

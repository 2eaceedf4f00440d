"""The DAG files load with Airflow's DagBag, and vdi_provision is wired as its steps, settings and pools say."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from vdi.callbacks import on_task_failure
from vdi.dag_defaults import sensor_settings, task_defaults
from vdi.steps import Step

DAGS_DIR = REPO_ROOT / "dags"
DAG_FILES = sorted(p.name for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_"))
# Each step's pool: the external system it calls (dedupe only reads the app database).
STEP_POOLS = {
    Step.VALIDATE: "jira_api", Step.DEDUPE: "default_pool", Step.PERSIST: "jira_api",
    Step.JIRA_IN_PROGRESS: "jira_api", Step.LAUNCH_INSTANCE: "aws_api", Step.WAIT_INSTANCE_RUNNING: "aws_api",
    Step.WAIT_BOOTSTRAP: "aws_api", Step.REGISTER_DESKTOP: "leostream_api", Step.WAIT_DESKTOP_IN_POOL: "leostream_api",
    Step.WAIT_AGENT_RUNNING: "leostream_api", Step.JIRA_READY: "jira_api",
}
WAITING_STEPS = (Step.WAIT_INSTANCE_RUNNING, Step.WAIT_BOOTSTRAP, Step.WAIT_DESKTOP_IN_POOL, Step.WAIT_AGENT_RUNNING)


@pytest.fixture(scope="module")
def dag_bag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


@pytest.fixture(scope="module")
def dag(dag_bag):
    return dag_bag.dags["vdi_provision"]


def test_every_dag_file_imports_without_errors_and_defines_the_documented_dags(dag_bag):
    assert dag_bag.import_errors == {}
    assert {Path(d.fileloc).name for d in dag_bag.dags.values()} == set(DAG_FILES)
    assert set(dag_bag.dags) == {"vdi_provision"}


def test_the_dag_file_imports_nothing_heavy_at_parse():
    script = (
        "import json, runpy, sys\n"
        "import airflow.sdk\n"
        "before = set(sys.modules)\n"
        f"runpy.run_path({str(DAGS_DIR / 'vdi_provision.py')!r})\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    added = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert {m for m in added if m.startswith("vdi.")} <= {
        "vdi.callbacks", "vdi.dag_defaults", "vdi.identity", "vdi.request", "vdi.settings", "vdi.states", "vdi.steps"}
    assert not {m.split(".")[0] for m in added} & {"psycopg", "boto3", "botocore", "atlassian", "requests", "jinja2"}


def test_the_task_ids_are_the_step_list_and_the_steps_run_one_after_another_in_its_order(dag):
    assert sorted(t.task_id for t in dag.tasks) == sorted(s.value for s in Step)
    order = list(Step)
    for task in dag.tasks:
        assert all(order.index(Step(up)) < order.index(Step(task.task_id)) for up in task.upstream_task_ids), task
    # One after another: a failed step leaves no other step of the run working on the request.
    for before, after in zip(order, order[1:]):
        assert after.value in dag.get_task(before.value).downstream_task_ids, (before, after)


def test_ready_is_reached_only_through_the_bootstrap_and_the_agent_checks(dag):
    upstream = dag.get_task(Step.JIRA_READY.value).get_flat_relative_ids(upstream=True)
    assert {Step.WAIT_BOOTSTRAP.value, Step.WAIT_AGENT_RUNNING.value} <= upstream


def test_every_task_retries_with_backoff_from_the_settings_is_bounded_and_reports_its_last_failure(dag):
    defaults = task_defaults()
    for task in dag.tasks:
        assert (task.retries, task.retry_delay, task.max_retry_delay) == (
            defaults["retries"], defaults["retry_delay"], defaults["max_retry_delay"]), task.task_id
        assert task.execution_timeout == defaults["execution_timeout"], task.task_id
        assert task.retry_exponential_backoff, task.task_id
        assert task.on_failure_callback in (on_task_failure, [on_task_failure]), task.task_id


def test_every_task_runs_in_the_pool_of_the_system_it_calls_and_the_pools_are_declared(dag):
    assert {t.task_id: t.pool for t in dag.tasks} == {step.value: pool for step, pool in STEP_POOLS.items()}
    declared = json.loads((REPO_ROOT / "include" / "airflow_pools.json").read_text())
    assert set(STEP_POOLS.values()) - {"default_pool"} == set(declared)


def test_the_waiting_steps_hold_no_worker_slot_and_use_the_settings_timing(dag):
    timing = sensor_settings()
    for step in WAITING_STEPS:
        sensor = dag.get_task(step.value)
        assert (sensor.mode, sensor.poke_interval, sensor.timeout) == (
            "reschedule", timing["poke_interval"], timing["timeout"])


def test_the_dag_runs_only_when_triggered(dag):
    assert type(dag.timetable).__name__ == "NullTimetable"
    assert not dag.catchup


def test_a_runs_conf_overrides_the_params_and_a_bad_issue_key_is_refused(dag):
    from airflow.sdk.definitions.param import process_params
    from airflow.sdk.exceptions import ParamValidationError

    task = dag.get_task(Step.VALIDATE.value)
    assert process_params(dag, task, None, suppress_exception=False) == {
        "issue_key": None, "force": False, "delivery_id": None, "event": None}
    conf = {"issue_key": "VDI-123", "force": False, "delivery_id": "d-1", "event": "jira:issue_updated"}
    assert process_params(dag, task, conf, suppress_exception=False) == conf
    assert process_params(dag, task, {"issue_key": "VDI-9", "force": True}, suppress_exception=False)["force"]
    for bad in ({"issue_key": "vdi-1; drop"}, {"issue_key": "VDI-9", "force": "yes"}):
        with pytest.raises(ParamValidationError):
            process_params(dag, task, bad, suppress_exception=False)

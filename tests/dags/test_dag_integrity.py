"""The DAG files load with Airflow's DagBag, and vdi_provision is wired as its steps, settings and pools say."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from vdi.callbacks import on_task_failure
from vdi.dag_defaults import task_defaults, wait_settings
from vdi.steps import TASK_STEPS, WITHIN, Step

DAGS_DIR = REPO_ROOT / "dags"
DAG_FILES = sorted(p.name for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_"))
# Each task's pool: the external system it calls.
STEP_POOLS = {
    Step.VALIDATE: "jira_api", Step.PERSIST: "jira_api", Step.JIRA_IN_PROGRESS: "jira_api",
    Step.LAUNCH_INSTANCE: "aws_api", Step.WAIT_INSTANCE_RUNNING: "aws_api", Step.REGISTER_DESKTOP: "leostream_api",
    Step.WAIT_DESKTOP_IN_POOL: "leostream_api", Step.JIRA_READY: "jira_api",
}
# Each wait task and its phases, in order.
WAIT_PHASES = {
    Step.WAIT_INSTANCE_RUNNING: (Step.WAIT_INSTANCE_RUNNING, Step.WAIT_BOOTSTRAP),
    Step.WAIT_DESKTOP_IN_POOL: (Step.WAIT_DESKTOP_IN_POOL, Step.WAIT_AGENT_RUNNING),
}


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
    assert set(dag_bag.dags) == {"vdi_provision", "vdi_deprovision", "vdi_reconcile"}  # DESIGN.md's DAG ids


def test_the_dag_file_imports_nothing_heavy_at_parse(tmp_path):
    script = (
        "import json, runpy, sys\n"
        "import airflow.sdk\n"
        "before = set(sys.modules)\n"
        f"runpy.run_path({str(DAGS_DIR / 'vdi_provision.py')!r})\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    # Without plugins/airflow_local_settings.py, which imports the tasks' modules in every Airflow process.
    env = {**os.environ, "AIRFLOW__CORE__PLUGINS_FOLDER": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120,
                            check=True)
    added = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert {m for m in added if m.startswith("vdi.")} <= {
        "vdi.callbacks", "vdi.dag_defaults", "vdi.identity", "vdi.request", "vdi.settings", "vdi.states", "vdi.steps",
        "vdi.waits"}
    assert not {m.split(".")[0] for m in added} & {"psycopg", "boto3", "botocore", "atlassian", "requests", "jinja2"}


def test_the_task_ids_are_the_step_list_and_the_steps_run_one_after_another_in_its_order(dag):
    assert sorted(t.task_id for t in dag.tasks) == sorted(s.value for s in TASK_STEPS)
    assert set(TASK_STEPS) | set(WITHIN) == set(Step) and all(s.task in TASK_STEPS for s in Step)
    order = list(TASK_STEPS)
    for task in dag.tasks:
        assert all(order.index(Step(up)) < order.index(Step(task.task_id)) for up in task.upstream_task_ids), task
    # One after another: a failed step leaves no other step of the run working on the request.
    for before, after in zip(order, order[1:]):
        assert after.value in dag.get_task(before.value).downstream_task_ids, (before, after)


def test_ready_is_reached_only_through_the_bootstrap_and_the_agent_checks(dag):
    upstream = dag.get_task(Step.JIRA_READY.value).get_flat_relative_ids(upstream=True)
    phases = {phase for task_id in upstream for phase in getattr(dag.get_task(task_id), "phases", ())}
    assert {Step.WAIT_BOOTSTRAP, Step.WAIT_AGENT_RUNNING} <= phases


def test_every_task_retries_with_backoff_from_the_settings_is_bounded_and_reports_its_last_failure(dag):
    defaults = task_defaults()
    for task in dag.tasks:
        assert (task.retries, task.retry_delay, task.max_retry_delay) == (
            defaults["retries"], defaults["retry_delay"], defaults["max_retry_delay"]), task.task_id
        assert task.execution_timeout == defaults["execution_timeout"], task.task_id
        assert task.retry_exponential_backoff, task.task_id
        assert task.on_failure_callback in (on_task_failure, [on_task_failure]), task.task_id


def test_a_task_outranks_every_task_before_it_so_a_run_further_along_gets_a_slot_first(dag):
    from types import SimpleNamespace

    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.task.priority_strategy import validate_and_load_priority_weight_strategy

    # The priority the scheduler gives each task instance, from the DAG as the scheduler reads it.
    scheduled = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    weight = {task.task_id: validate_and_load_priority_weight_strategy(task.weight_rule).get_weight(
        SimpleNamespace(task=task)) for task in scheduled.tasks}
    for task in scheduled.tasks:
        for upstream in task.upstream_task_ids:
            assert weight[task.task_id] > weight[upstream], (upstream, task.task_id, weight)


def test_every_task_runs_in_the_pool_of_the_system_it_calls_and_the_pools_are_declared(dag):
    assert {t.task_id: t.pool for t in dag.tasks} == {step.value: pool for step, pool in STEP_POOLS.items()}
    declared = json.loads((REPO_ROOT / "include" / "airflow_pools.json").read_text())
    assert set(STEP_POOLS.values()) - {"default_pool"} == set(declared)


def test_the_waiting_steps_defer_to_the_triggerer_with_the_settings_timing(dag):
    from vdi.waits import StepWait

    timing = wait_settings()
    for step, phases in WAIT_PHASES.items():
        wait = dag.get_task(step.value)
        assert isinstance(wait, StepWait) and (wait.step, wait.phases) == (step, phases)
        assert (wait.poke_interval_s, wait.wait_timeout_s) == (timing["poke_interval_s"], timing["wait_timeout_s"])
    # The broker's wait checks once in its task first (its desktop is usually there after registration); an
    # instance just launched never passes its status checks at once.
    assert dag.get_task(Step.WAIT_DESKTOP_IN_POOL.value).check_first
    assert not dag.get_task(Step.WAIT_INSTANCE_RUNNING.value).check_first


def test_a_wait_defers_at_once_through_its_phases_each_bounded_by_the_wait_timeout(dag):
    from airflow.sdk.exceptions import TaskDeferred

    from vdi.waits import StepTrigger

    wait = dag.get_task(Step.WAIT_INSTANCE_RUNNING.value)
    wait.request, wait.instance_id = {"issue_key": "VDI-1"}, "i-0123456789abcdef0"
    context = {"ti": None, "run_id": "delivery-run-1", "params": {"delivery_id": "d-1", "force": False}}
    with pytest.raises(TaskDeferred) as deferred:
        wait.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, StepTrigger) and deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout.total_seconds() == 2 * wait.wait_timeout_s + wait.poke_interval_s
    classpath, kwargs = trigger.serialize()
    assert classpath == "vdi.waits.StepTrigger"
    assert (kwargs["step"], kwargs["then"], kwargs["phase_timeout_s"], kwargs["run_id"], kwargs["instance_id"],
            kwargs["manual"]) == ("wait_instance_running", ["wait_bootstrap"], wait.wait_timeout_s, "delivery-run-1",
                                  "i-0123456789abcdef0", False)
    assert StepTrigger(**kwargs).serialize() == (classpath, kwargs)  # as the triggerer rebuilds it


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

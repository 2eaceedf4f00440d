"""``vdi.waits``: a wait task's phases keep their own steps. (The waits' checks against the sandboxes, in the
triggerer and in the worker, are in test_provision.py beside the steps they check.)"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from vdi.callbacks import record_task_failure
from vdi.provision import BootstrapFailed
from vdi.steps import Step
from vdi.waits import PHASES, WAITING_STEPS, StepWait, at_step


def failure_context(task_id: str, error: BaseException) -> dict:
    return {"ti": SimpleNamespace(task_id=task_id, try_number=1), "run_id": "delivery-run-1", "exception": error,
            "params": {"issue_key": "VDI-1", "delivery_id": "d-1", "force": False}}


def test_every_waiting_step_is_a_phase_of_exactly_one_wait_task_which_is_named_after_its_first():
    assert sorted(WAITING_STEPS) == sorted({Step.WAIT_INSTANCE_RUNNING, Step.WAIT_BOOTSTRAP,
                                            Step.WAIT_DESKTOP_IN_POOL, Step.WAIT_AGENT_RUNNING})
    assert all(phases[0] == task and all(p.task == task for p in phases) for task, phases in PHASES.items())
    with pytest.raises(ValueError, match="wait_bootstrap is not a wait"):
        StepWait(step=Step.WAIT_BOOTSTRAP, request={}, poke_interval_s=1, wait_timeout_s=1)


def test_a_failure_in_a_later_phase_is_recorded_at_that_phase_not_at_the_task(app_database_url, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_JIRA_DEFAULT", raising=False)  # Jira unreachable: the step is still recorded
    recorded = []
    with pytest.raises(BootstrapFailed) as failed:
        with at_step(Step.WAIT_BOOTSTRAP):
            raise BootstrapFailed("it failed")

    record_task_failure(failure_context(Step.WAIT_INSTANCE_RUNNING.value, failed.value),
                        lambda conn, jira, key, run, step, *rest: recorded.append((key, step)), Step)
    record_task_failure(failure_context(Step.WAIT_INSTANCE_RUNNING.value, TimeoutError()),
                        lambda conn, jira, key, run, step, *rest: recorded.append((key, step)), Step)
    assert recorded == [("VDI-1", Step.WAIT_BOOTSTRAP), ("VDI-1", Step.WAIT_INSTANCE_RUNNING)]

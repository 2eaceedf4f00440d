"""What the VDI DAGs' tasks need from Airflow: the run asking to work (``current_run``) and its ticket
(``issue_key_param``), how a step's outcome becomes a task state (``task_outcome``) and the failure callbacks'
common part (``record_task_failure``). Imported by the DAG files at parse time, so it imports nothing heavy until
a task or callback runs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from vdi.states import Run

log = logging.getLogger(__name__)

ACTIVE_RUN_STATES = ["queued", "running"]


def current_run(context: dict[str, Any] | None = None) -> Run:
    """The task's DAG run (``context``: the running task's): manual when no webhook delivery started it, ``force``
    from its params, and whether another run of the DAG is still queued or running, asked of Airflow's execution
    API (a deleted run is not)."""
    if context is None:
        from airflow.sdk import get_current_context

        context = get_current_context()
    ti = context["ti"]
    params = context["params"]

    def is_running(run_id: str) -> bool:
        return ti.get_dr_count(dag_id=ti.dag_id, run_ids=[run_id], states=ACTIVE_RUN_STATES) > 0

    return Run(context["run_id"], manual=not params.get("delivery_id"), force=bool(params.get("force")),
               is_running=is_running)


def issue_key_param() -> str:
    """The running task's ``issue_key`` param (Airflow merges the run's conf into its params)."""
    from airflow.sdk import get_current_context

    issue_key = get_current_context()["params"].get("issue_key")
    if not issue_key:
        raise ValueError('no issue key: trigger with conf {"issue_key": "VDI-123"}')
    return issue_key


@contextmanager
def task_outcome() -> Iterator[None]:
    """Around a step: a run that no longer owns its request skips the rest of the run; a failure no retry
    mends (``vdi.provision.PERMANENT_FAILURES``) fails the task without its retries."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
    from vdi.provision import PERMANENT_FAILURES, NotOwner

    try:
        yield
    except NotOwner as not_owner:
        raise AirflowSkipException(str(not_owner)) from not_owner
    except PERMANENT_FAILURES as failure:
        raise AirflowFailException(str(failure)) from failure


def _reachable(what: str, connect: Callable[[], Any]) -> Any:
    """``connect()``, or None (logged) when ``what`` cannot be reached: a failure callback reports what it can."""
    from vdi.provision import readable_cause

    try:
        return connect()
    except Exception as error:
        log.error("cannot reach %s: %s", what, readable_cause(error))
        return None


def record_task_failure(context: dict[str, Any], record: Callable[..., None], step_type: type) -> None:
    """The body of a failure callback: ``record(conn, jira, issue_key, run, step, error, attempt)`` (a
    ``record_failure``; ``step`` is the task id as a ``step_type``) for the run's ticket, with Jira None when
    unreachable; never raises."""
    from vdi.jira import JiraTicket
    from vdi.provision import database, readable_cause

    ti = context["ti"]
    issue_key = context["params"].get("issue_key")
    if not issue_key:
        log.error("%s failed and the run names no issue key; nothing to report", ti.task_id)
        return
    run = current_run(context)
    jira = _reachable("Jira to report the failure", JiraTicket.for_failure_report)
    try:
        with database() as conn:
            # A wait's later phase names its own step on the error (vdi.waits.at_step).
            step = getattr(context.get("exception"), "failed_step", None) or ti.task_id
            record(conn, jira, issue_key, run, step_type(step), context.get("exception"),
                   f"{run.run_id}-{ti.try_number}")
    except Exception as error:  # a failure callback must not raise; the log is the last resort
        log.error("could not record the failure of %s for %s: %s", ti.task_id, issue_key, readable_cause(error))


def on_task_failure(context: dict[str, Any]) -> None:
    """``on_failure_callback`` of the provisioning tasks: runs once a task has no retry left."""
    from vdi.catalog import load_catalog
    from vdi.ec2 import aws_client
    from vdi.provision import record_failure
    from vdi.steps import Step

    def record_and_dispose(*failure) -> None:
        ec2 = _reachable("EC2 to dispose of the instance", lambda: aws_client("ec2"))
        record_failure(*failure, ec2=ec2, catalog=load_catalog())

    record_task_failure(context, record_and_dispose, Step)

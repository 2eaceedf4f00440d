"""What the VDI DAGs' tasks need from Airflow: the run asking to work (``current_run``), how a step's outcome
becomes a task state (``task_outcome``) and the failure callback. Imported by the DAG files at parse time, so it
imports nothing heavy until a task or callback runs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from vdi.states import Run

log = logging.getLogger(__name__)

ACTIVE_RUN_STATES = ["queued", "running"]


def current_run(context: dict[str, Any]) -> Run:
    """The task's DAG run: manual when no webhook delivery started it, ``force`` from its params, and whether
    another run of the DAG is still queued or running, asked of Airflow's execution API (a deleted run is not)."""
    ti = context["ti"]
    params = context["params"]

    def is_running(run_id: str) -> bool:
        return ti.get_dr_count(dag_id=ti.dag_id, run_ids=[run_id], states=ACTIVE_RUN_STATES) > 0

    return Run(context["run_id"], manual=not params.get("delivery_id"), force=bool(params.get("force")),
               is_running=is_running)


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


def on_task_failure(context: dict[str, Any]) -> None:
    """``on_failure_callback`` of the provisioning tasks: runs once a task has no retry left."""
    from vdi.catalog import load_catalog
    from vdi.ec2 import aws_client
    from vdi.jira import JiraTicket
    from vdi.provision import database, readable_cause, record_failure
    from vdi.steps import Step

    ti = context["ti"]
    issue_key = context["params"].get("issue_key")
    if not issue_key:
        log.error("%s failed and the run names no issue key; nothing to report", ti.task_id)
        return
    run = current_run(context)
    attempt = f"{run.run_id}-{ti.try_number}"
    jira = ec2 = None
    try:
        jira = JiraTicket.from_connection()
    except Exception as error:
        log.error("cannot reach Jira to report the failure: %s", readable_cause(error))
    try:
        ec2 = aws_client("ec2")
    except Exception as error:
        log.error("cannot reach EC2 to dispose of the instance: %s", readable_cause(error))
    try:
        with database() as conn:
            record_failure(conn, jira, issue_key, run, Step(ti.task_id), context.get("exception"), attempt,
                           ec2=ec2, catalog=load_catalog())
    except Exception as error:  # a failure callback must not raise; the log is the last resort
        log.error("could not record the failure of %s for %s: %s", ti.task_id, issue_key, readable_cause(error))

"""Airflow callbacks of the VDI DAGs. Imported by the DAG files at parse time, so it imports nothing heavy
until a callback runs."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def on_task_failure(context: dict[str, Any]) -> None:
    """``on_failure_callback`` of the provisioning tasks: runs once a task has no retry left."""
    from vdi.jira import JiraTicket
    from vdi.provision import readable_cause, record_failure
    from vdi.states import Run
    from vdi.steps import Step
    from vdi.store.db import connect

    ti = context["ti"]
    params = context["params"]
    issue_key = params.get("issue_key")
    if not issue_key:
        log.error("%s failed and the run names no issue key; nothing to report", ti.task_id)
        return
    run = Run(context["run_id"], manual=not params.get("delivery_id"))
    attempt = f"{run.run_id}-{ti.try_number}"
    jira = None
    try:
        jira = JiraTicket.from_connection()
    except Exception as error:
        log.error("cannot reach Jira to report the failure: %s", readable_cause(error))
    try:
        with connect(autocommit=True) as conn:
            record_failure(conn, jira, issue_key, run, Step(ti.task_id), context.get("exception"), attempt)
    except Exception as error:  # a failure callback must not raise; the log is the last resort
        log.error("could not record the failure of %s for %s: %s", ti.task_id, issue_key, readable_cause(error))

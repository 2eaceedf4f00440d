"""Airflow callbacks of the VDI DAGs. Imported by the DAG files at parse time, so it imports nothing heavy
until a callback runs."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def on_task_failure(context: dict[str, Any]) -> None:
    """``on_failure_callback`` of the provisioning tasks: runs once a task has no retry left."""
    from vdi import clients
    from vdi.provision import readable_cause, record_failure

    ti = context["ti"]
    params = context.get("params") or {}
    conf = getattr(context.get("dag_run"), "conf", None) or {}
    issue_key = params.get("issue_key") or conf.get("issue_key")
    if not issue_key:
        log.error("%s failed and the run names no issue key; nothing to report", ti.task_id)
        return
    attempt = f"{context['run_id']}-{ti.try_number}"
    jira = None
    try:
        jira = clients.jira()
    except Exception as error:
        log.error("cannot reach Jira to report the failure: %s", readable_cause(error))
    try:
        with clients.database() as conn:
            record_failure(conn, jira, issue_key, ti.task_id, context.get("exception"), attempt)
    except Exception as error:  # a failure callback must not raise; the log is the last resort
        log.error("could not record the failure of %s for %s: %s", ti.task_id, issue_key, readable_cause(error))

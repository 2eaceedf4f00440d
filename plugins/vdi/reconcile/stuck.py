"""Stuck requests: a request left unchanged in a state past that state's deadline.

In progress (``VDI_RECONCILE_STUCK_IN_PROGRESS_S``): when the run that owns it is no longer queued or running
(marked failed or success in the UI, deleted, lost with its worker), the reconcile records the failure the
owner would have recorded, through the same owner-only path (``vdi.provision.record_failure`` for that run):
state ``failed`` at the step it stopped at, the instance disposed of as the catalog says, the ticket moved to
*Failed* and a plain comment. One whose run still runs is reported (its own timeouts end it). Removing
(``VDI_RECONCILE_STUCK_REMOVING_S``) is reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg

from vdi.catalog import Catalog
from vdi.jira import JiraTicket
from vdi.reconcile import tally
from vdi.states import RequestState, Run
from vdi.steps import Step
from vdi.store import reconcile as store

KIND = "stuck_request"


class StuckRequest(TimeoutError):
    """The request's run stopped without recording an outcome (a requester reads: it did not finish in time)."""


def stuck(conn: psycopg.Connection, jira: JiraTicket, ec2, catalog: Catalog | None,
          is_running: Callable[[str], bool], *, in_progress_s: float, removing_s: float, max_fixes: int,
          dry_run: bool) -> dict[str, Any]:
    """Fail the stuck requests whose run is gone (at most ``max_fixes``), report the others; the counts.
    ``is_running(run_id)`` says whether a ``vdi_provision`` run is still queued or running."""
    from vdi.provision import record_failure

    started = time.monotonic()
    rows = {row["issue_key"]: row for row in store.stuck_requests(
        conn, {RequestState.IN_PROGRESS: in_progress_s, RequestState.REMOVING: removing_s})}
    found = [store.Finding(key, key, {"state": row["state"], "step": row["step"], "run_id": row["owner_run_id"],
                                      "unchanged_s": round(float(row["age_s"]))})
             for key, row in rows.items()]
    running: dict[str, bool] = {}

    def owner_gone(finding: store.Finding) -> bool:
        row = rows[finding.subject]
        if row["state"] != RequestState.IN_PROGRESS or row["step"] not in Step._value2member_map_:
            return False
        owner = row["owner_run_id"]
        if owner not in running:
            running[owner] = bool(owner) and is_running(owner)
        return not running[owner]

    def fix(finding: store.Finding) -> str:
        row = rows[finding.subject]
        owner = row["owner_run_id"] or ""
        record_failure(conn, jira, row["issue_key"], Run(owner), Step(row["step"]),
                       StuckRequest(f"unchanged for {round(float(row['age_s']))} s and its run {owner} is no longer "
                                    "running"), f"reconcile-{owner}", ec2=ec2, catalog=catalog)
        return "failed"

    counts = tally.settle(conn, KIND, found, dry_run=dry_run, max_fixes=max_fixes, fix=fix, fixable=owner_gone)
    return {**counts, "seconds": round(time.monotonic() - started, 3)}

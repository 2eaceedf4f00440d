"""The life cycle of a desktop request: the one home of its states, and of the rule that says which DAG run may
move a request on."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

try:
    from enum import StrEnum
except ImportError:  # Python 3.10: the same class, backported
    from backports.strenum import StrEnum


class RequestState(StrEnum):
    """Where a desktop request stands; stored in ``desktop_requests.state``."""

    RECEIVED = "received"
    IN_PROGRESS = "in_progress"
    READY = "ready"
    FAILED = "failed"
    REJECTED = "rejected"
    REMOVING = "removing"
    REMOVED = "removed"


class DeliveryStatus(StrEnum):
    """Where a recorded webhook delivery stands; stored in ``deliveries.status``."""

    PENDING = "pending"
    DISPATCHED = "dispatched"
    IGNORED = "ignored"
    FAILED = "failed"
    # Never to be triggered: its route's DAG does not exist, or Airflow refused it past the requeue cap. Final.
    DEAD_LETTERED = "dead_lettered"


def _assume_running(run_id: str) -> bool:
    return True


@dataclass(frozen=True)
class Run:
    """A DAG run asking to work on a ticket.

    ``manual`` when a person started it (no webhook delivery), ``force`` when that person asked to take over a
    request stuck under a run that is no longer running; ``is_running`` says whether another run of the DAG is
    still queued or running (without Airflow at hand: assume it is, and take nothing over).
    """

    run_id: str
    manual: bool = False
    force: bool = False
    is_running: Callable[[str], bool] = field(default=_assume_running, compare=False, repr=False)


def owns(row: Mapping[str, Any] | None, run: Run) -> bool:
    """``run`` holds the claim on ``row`` (in progress or failed under it): only it writes the outcome."""
    return (row is not None and row["owner_run_id"] == run.run_id
            and row["state"] in (RequestState.IN_PROGRESS, RequestState.FAILED))


def refusal(issue_key: str, row: Mapping[str, Any] | None, run: Run, ticket_status: str | None,
            trigger_status: str, dag_id: str = "vdi_provision") -> str:
    """Why ``run`` may not work on ``issue_key`` (its request ``row``, None when never seen, and the ticket's
    Jira status); "" when it may. Every step that asks asks this.

    - A run resumes its own claim (in progress or failed), whatever the ticket's status.
    - A failed request is taken over by a manual run, whatever the ticket's status, or by a webhook run once
      the ticket is back in the trigger status (Jira's *Retry*). The failure comment's own delivery finds the
      ticket in *Failed* and stops there, so a failure does not restart itself; nor does one that could not
      move the ticket to *Failed* (``ticket_failed`` false in the row's ``failure`` detail).
    - A request in progress under another run is left alone while that run is queued or running; once it is
      not (marked failed or success in the UI, or deleted), a manual run with ``force`` takes it over.
    - A ready request, or one being removed or removed, is left alone.
    - Otherwise (new, received or rejected: the ticket may have been corrected) the ticket must be in the
      trigger status.

    A desktop removal (``vdi.store.removals``) follows the same rule with its own trigger status and ``dag_id``.
    """
    state = RequestState(row["state"]) if row else None
    owner = row["owner_run_id"] if row else None
    in_trigger_status = (ticket_status or "").lower() == trigger_status.lower()
    if owns(row, run):
        return ""
    if state == RequestState.FAILED:
        retried_in_jira = in_trigger_status and _failure_moved_ticket(row)
        if run.manual or retried_in_jira:
            return ""
        return (f"{issue_key} failed at {row['step']}: use Retry on the ticket, clear the failed task of run "
                f"{owner}, or trigger {dag_id} by hand with issue_key {issue_key}")
    if state == RequestState.IN_PROGRESS:
        if run.manual and owner and not run.is_running(owner):
            if run.force:
                return ""
            return (f"{issue_key} is in_progress by run {owner}, which is no longer running: trigger again with"
                    f" force to take it over")
        return f"{issue_key} is already in_progress by run {owner}"
    if state in (RequestState.READY, RequestState.REMOVING, RequestState.REMOVED):
        return f"{issue_key} is already {state.value}"
    if not in_trigger_status:
        return f"{issue_key} is {ticket_status!r}, not {trigger_status!r}"
    return ""


def _failure_moved_ticket(row: Mapping[str, Any]) -> bool:
    """Whether the recorded failure moved the ticket to Failed (older rows, without the record: assume so)."""
    failure = (row.get("detail") or {}).get("failure") or {}
    return failure.get("ticket_failed", True) is not False

"""The life cycle of a desktop request: the one home of its states, and of the rule that says which DAG run may
move a request on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


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


@dataclass(frozen=True)
class Run:
    """A DAG run asking to work on a ticket; ``manual`` when a person started it (no webhook delivery)."""

    run_id: str
    manual: bool = False


def refusal(issue_key: str, row: Mapping[str, Any] | None, run: Run, ticket_status: str | None,
            trigger_status: str) -> str:
    """Why ``run`` may not work on ``issue_key`` (its request ``row``, None when never seen, and the ticket's
    Jira status); "" when it may. Every step that asks asks this.

    - A run resumes its own claim (in progress or failed), whatever the ticket's status.
    - A failed request is resumed by a manual run, whatever the ticket's status; never by another webhook
      delivery: the failure comment itself causes one, and resuming on it would loop.
    - A request in progress under another run, ready, being removed or removed is left alone.
    - Otherwise (new, received or rejected: the ticket may have been corrected) the ticket must be in the
      trigger status.
    """
    state = RequestState(row["state"]) if row else None
    owner = row["owner_run_id"] if row else None
    if state in (RequestState.IN_PROGRESS, RequestState.FAILED) and owner == run.run_id:
        return ""
    if state == RequestState.FAILED:
        if run.manual:
            return ""
        return (f"{issue_key} failed at {row['step']}: clear the failed task of run {owner}"
                f" or trigger vdi_provision by hand with issue_key {issue_key}")
    if state == RequestState.IN_PROGRESS:
        return f"{issue_key} is already in_progress by run {owner}"
    if state in (RequestState.READY, RequestState.REMOVING, RequestState.REMOVED):
        return f"{issue_key} is already {state.value}"
    if (ticket_status or "").lower() != trigger_status.lower():
        return f"{issue_key} is {ticket_status!r}, not {trigger_status!r}"
    return ""

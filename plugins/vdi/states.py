"""The life cycle of a desktop request: the one home of its states."""

from __future__ import annotations

from enum import StrEnum


class RequestState(StrEnum):
    """Where a desktop request stands; stored in ``desktop_requests.state``."""

    RECEIVED = "received"
    IN_PROGRESS = "in_progress"
    READY = "ready"
    FAILED = "failed"
    REJECTED = "rejected"
    REMOVING = "removing"
    REMOVED = "removed"

    @property
    def is_final(self) -> bool:
        return self in {RequestState.READY, RequestState.FAILED, RequestState.REJECTED, RequestState.REMOVED}


class DeliveryStatus(StrEnum):
    """Where a recorded webhook delivery stands; stored in ``deliveries.status``."""

    PENDING = "pending"
    DISPATCHED = "dispatched"
    IGNORED = "ignored"
    FAILED = "failed"

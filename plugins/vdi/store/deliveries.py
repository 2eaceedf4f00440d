"""The ``deliveries`` table: the webhook bridge's inbox, shared with the reconciler DAG.

Every statement about deliveries lives here. A delivery is recorded once (its id is the primary key), then
claimed by one dispatcher at a time with ``FOR UPDATE SKIP LOCKED``, so any number of bridge processes (and
the reconciler) can sweep the same table without triggering a delivery twice at the same moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import psycopg
from psycopg.types.json import Jsonb

from vdi.states import DeliveryStatus

_MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class NewDelivery:
    """A verified delivery as the bridge records it: ``PENDING`` (routed to a DAG) or ``IGNORED`` (with a reason)."""

    delivery_id: str
    id_from_body: bool
    event: str
    issue_key: str | None
    payload: dict
    status: DeliveryStatus
    reason: str | None = None
    dag_id: str | None = None
    dag_run_id: str | None = None
    # The payload's JSON text as received, when it is known to be storable as it is (the bridge checked it):
    # stored instead of serialising ``payload`` again.
    payload_json: str | None = None

    def payload_param(self):
        return self.payload_json if self.payload_json is not None else Jsonb(self.payload)


@dataclass(frozen=True)
class ClaimedDelivery:
    """A pending delivery locked by the caller's open transaction until it commits."""

    delivery_id: str
    event: str
    issue_key: str | None
    dag_id: str
    dag_run_id: str
    attempts: int


@dataclass(frozen=True)
class Backlog:
    pending: int
    oldest_pending_age_s: float


def record(conn: psycopg.Connection, delivery: NewDelivery) -> bool:
    """Insert the delivery; True when it is new, False when its id was already recorded (a duplicate)."""
    return delivery.delivery_id in record_many(conn, [delivery])


_INSERT = ("INSERT INTO deliveries (delivery_id, id_from_body, event, issue_key, status, reason, payload, dag_id,"
           " dag_run_id) VALUES ")
_ROW_PLACEHOLDERS = "(%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s)"


def record_many(conn: psycopg.Connection, batch: list[NewDelivery]) -> set[str]:
    """Insert several deliveries in one statement; the ids that were new (the others were already recorded).

    When one id appears twice in ``batch`` only one row is inserted; telling the copies apart is the caller's.
    """
    params: list = []
    for d in batch:
        params += [d.delivery_id, d.id_from_body, d.event, d.issue_key, d.status.value, d.reason, d.payload_param(),
                   d.dag_id, d.dag_run_id]
    rows = conn.execute(
        _INSERT + ", ".join([_ROW_PLACEHOLDERS] * len(batch))
        + " ON CONFLICT (delivery_id) DO NOTHING RETURNING delivery_id",
        params,
    ).fetchall()
    return {row[0] for row in rows}


_CLAIM_COLUMNS = "delivery_id, event, issue_key, dag_id, dag_run_id, attempts"


def claim(conn: psycopg.Connection, delivery_id: str | None = None) -> ClaimedDelivery | None:
    """Lock one pending delivery for dispatch inside the caller's transaction (see ``claim_many``): that one,
    or the most overdue that is due; None when there is none free."""
    claimed = claim_many(conn, [delivery_id] if delivery_id is not None else None, limit=1)
    return claimed[0] if claimed else None


def claim_many(conn: psycopg.Connection, delivery_ids: list[str] | None = None,
               limit: int = 1) -> list[ClaimedDelivery]:
    """Lock several pending deliveries for dispatch inside the caller's transaction, in one statement.

    With ``delivery_ids``: those that are still pending and nobody holds (a wake-up need not wait for
    ``next_attempt_at``), in the order given. Without: up to ``limit`` of the most overdue that are due.
    Rows another transaction holds are skipped, never waited for.
    """
    if delivery_ids is not None:
        rows = conn.execute(
            f"SELECT {_CLAIM_COLUMNS} FROM deliveries WHERE delivery_id = ANY(%s) AND status = 'pending'"
            " FOR UPDATE SKIP LOCKED",
            (list(delivery_ids),),
        ).fetchall()
        order = {delivery_id: position for position, delivery_id in enumerate(delivery_ids)}
        rows.sort(key=lambda row: order.get(row[0], 0))
    else:
        rows = conn.execute(
            f"SELECT {_CLAIM_COLUMNS} FROM deliveries WHERE status = 'pending' AND next_attempt_at <= now()"
            " ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED",
            (limit,),
        ).fetchall()
    return [ClaimedDelivery(*row) for row in rows]


def mark_dispatched_many(conn: psycopg.Connection, delivery_ids: list[str]) -> None:
    """Mark deliveries Airflow took (created or already there) as dispatched, in one statement."""
    if delivery_ids:
        conn.execute(
            "UPDATE deliveries SET status = 'dispatched', dispatched_at = now(), attempts = attempts + 1,"
            " last_error = NULL WHERE delivery_id = ANY(%s)",
            (list(delivery_ids),),
        )


def mark_dispatched(conn: psycopg.Connection, delivery_id: str) -> None:
    mark_dispatched_many(conn, [delivery_id])


def mark_retry(conn: psycopg.Connection, delivery_id: str, error: str, delay_s: float) -> None:
    """Leave the delivery pending and due again after ``delay_s``."""
    conn.execute(
        "UPDATE deliveries SET attempts = attempts + 1, last_error = %s, next_attempt_at = now() + %s"
        " WHERE delivery_id = %s",
        (error[:_MAX_ERROR_CHARS], timedelta(seconds=delay_s), delivery_id),
    )


def mark_failed(conn: psycopg.Connection, delivery_id: str, error: str) -> None:
    """Give up on the delivery: Airflow refused it for good (e.g. invalid conf); the reconciler may requeue."""
    conn.execute(
        "UPDATE deliveries SET status = 'failed', attempts = attempts + 1, last_error = %s, reason = %s"
        " WHERE delivery_id = %s",
        (error[:_MAX_ERROR_CHARS], "trigger refused", delivery_id),
    )


def requeue(conn: psycopg.Connection, delivery_id: str) -> bool:
    """Make a failed or pending delivery due now (for the reconciler or an operator); True when found."""
    row = conn.execute(
        "UPDATE deliveries SET status = 'pending', next_attempt_at = now()"
        " WHERE delivery_id = %s AND status IN ('pending', 'failed') AND dag_id IS NOT NULL RETURNING delivery_id",
        (delivery_id,),
    ).fetchone()
    return row is not None


def backlog(conn: psycopg.Connection) -> Backlog:
    """How many deliveries wait to be dispatched, and how long the oldest has waited."""
    count, age = conn.execute(
        "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(received_at)), 0)"
        " FROM deliveries WHERE status = 'pending'"
    ).fetchone()
    return Backlog(int(count), float(age))


def get_status(conn: psycopg.Connection, delivery_id: str) -> DeliveryStatus | None:
    row = conn.execute("SELECT status FROM deliveries WHERE delivery_id = %s", (delivery_id,)).fetchone()
    return DeliveryStatus(row[0]) if row else None

"""The ``deliveries`` table: the webhook bridge's inbox, read by the relay; and the relay's beats.

Every statement about deliveries lives here. A delivery is recorded once (its id is the primary key), which
notifies ``NEW_DELIVERY_CHANNEL`` when it is pending; then it is claimed by one relay at a time with
``FOR UPDATE SKIP LOCKED``, so any number of relay processes can sweep the same table without
triggering a delivery twice at the same moment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import psycopg
from psycopg.types.json import Jsonb

from vdi.states import DeliveryStatus

_MAX_ERROR_CHARS = 500
# Notified (empty payload) by every transaction that makes a delivery pending and due: the relay LISTENs to it.
NEW_DELIVERY_CHANNEL = "vdi_deliveries"
# A relay beats this often; one whose last beat is older than RELAY_BEAT_STALE_S is taken for stopped.
RELAY_BEAT_INTERVAL_S = 2.0
RELAY_BEAT_STALE_S = 5 * RELAY_BEAT_INTERVAL_S
# A relay's beat older than this is removed by the next beat of any relay.
_FORGET_BEATS_AFTER = timedelta(days=1)


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
    # What started the run, in words (the run's note in Airflow); routed deliveries only.
    note: str | None = None
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
    note: str | None


@dataclass(frozen=True)
class Backlog:
    pending: int
    oldest_pending_age_s: float


@dataclass(frozen=True)
class RelayReport:
    """What the relays wrote: how long ago the last beat was (None: no relay is running), and the trigger
    attempts of every relay so far, by outcome."""

    last_beat_age_s: float | None
    trigger_attempts: dict[str, int]


def record(conn: psycopg.Connection, delivery: NewDelivery) -> bool:
    """Insert the delivery; True when it is new, False when its id was already recorded (a duplicate)."""
    return delivery.delivery_id in record_many(conn, [delivery])


_INSERT = ("WITH new AS (INSERT INTO deliveries (delivery_id, id_from_body, event, issue_key, status, reason, payload,"
           " dag_id, dag_run_id, note) VALUES ")
_ROW_PLACEHOLDERS = "(%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s)"
# pg_notify per pending row: PostgreSQL delivers one notification per transaction (identical ones are merged).
_INSERTED = (" ON CONFLICT (delivery_id) DO NOTHING RETURNING delivery_id, status)"
             f" SELECT delivery_id, CASE WHEN status = 'pending' THEN pg_notify('{NEW_DELIVERY_CHANNEL}', '') END"
             " FROM new")


def record_many(conn: psycopg.Connection, batch: list[NewDelivery]) -> set[str]:
    """Insert several deliveries in one statement; the ids that were new (the others were already recorded).

    A new pending delivery notifies ``NEW_DELIVERY_CHANNEL`` when the statement's transaction commits.
    When one id appears twice in ``batch`` only one row is inserted; telling the copies apart is the caller's.
    """
    params: list = []
    for d in batch:
        params += [d.delivery_id, d.id_from_body, d.event, d.issue_key, d.status.value, d.reason, d.payload_param(),
                   d.dag_id, d.dag_run_id, d.note]
    rows = conn.execute(_INSERT + ", ".join([_ROW_PLACEHOLDERS] * len(batch)) + _INSERTED, params).fetchall()
    return {row[0] for row in rows}


def listen(conn: psycopg.Connection) -> None:
    """Subscribe this (autocommit) connection to ``NEW_DELIVERY_CHANNEL``."""
    conn.execute(f"LISTEN {NEW_DELIVERY_CHANNEL}")


_CLAIM_COLUMNS = "delivery_id, event, issue_key, dag_id, dag_run_id, attempts, note"


def claim_due(conn: psycopg.Connection, limit: int = 1) -> list[ClaimedDelivery]:
    """Lock up to ``limit`` pending deliveries that are due, most overdue first, inside the caller's transaction.

    Rows another transaction holds are skipped, never waited for.
    """
    rows = conn.execute(
        f"SELECT {_CLAIM_COLUMNS} FROM deliveries WHERE status = 'pending' AND next_attempt_at <= now()"
        " ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED",
        (limit,),
    ).fetchall()
    return [ClaimedDelivery(*row) for row in rows]


def mark_dispatched(conn: psycopg.Connection, delivery_ids: list[str]) -> None:
    """Mark deliveries Airflow took (created or already there) as dispatched, in one statement."""
    if delivery_ids:
        conn.execute(
            "UPDATE deliveries SET status = 'dispatched', dispatched_at = now(), attempts = attempts + 1,"
            " last_error = NULL WHERE delivery_id = ANY(%s)",
            (list(delivery_ids),),
        )


def mark_retry(conn: psycopg.Connection, delivery_id: str, error: str, delay_s: float) -> None:
    """Leave the delivery pending and due again after ``delay_s``."""
    conn.execute(
        "UPDATE deliveries SET attempts = attempts + 1, last_error = %s, next_attempt_at = now() + %s"
        " WHERE delivery_id = %s",
        (error[:_MAX_ERROR_CHARS], timedelta(seconds=delay_s), delivery_id),
    )


def mark_failed(conn: psycopg.Connection, delivery_id: str, error: str) -> None:
    """Give up on the delivery: Airflow refused it for good (e.g. invalid conf); an operator may requeue it."""
    conn.execute(
        "UPDATE deliveries SET status = 'failed', attempts = attempts + 1, last_error = %s, reason = %s"
        " WHERE delivery_id = %s",
        (error[:_MAX_ERROR_CHARS], "trigger refused", delivery_id),
    )


def requeue(conn: psycopg.Connection, delivery_id: str) -> bool:
    """Make a failed or pending delivery due now and notify the relay (for an operator);
    True when found."""
    row = conn.execute(
        "WITH requeued AS (UPDATE deliveries SET status = 'pending', next_attempt_at = now()"
        " WHERE delivery_id = %s AND status IN ('pending', 'failed') AND dag_id IS NOT NULL RETURNING delivery_id)"
        f" SELECT delivery_id, pg_notify('{NEW_DELIVERY_CHANNEL}', '') FROM requeued",
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


def relay_beat(conn: psycopg.Connection, relay_id: str, attempts: Mapping[str, int], *, alive: bool = True) -> None:
    """One relay's beat (``alive``) or its goodbye, adding its trigger attempts since the last beat, by outcome."""
    with conn.transaction():
        if alive:
            conn.execute("INSERT INTO relay_heartbeats (relay_id, beat_at) VALUES (%s, now())"
                         " ON CONFLICT (relay_id) DO UPDATE SET beat_at = now()", (relay_id,))
        else:
            conn.execute("DELETE FROM relay_heartbeats WHERE relay_id = %s", (relay_id,))
        conn.execute("DELETE FROM relay_heartbeats WHERE beat_at < now() - %s", (_FORGET_BEATS_AFTER,))
        counted = {outcome: count for outcome, count in attempts.items() if count}
        if counted:
            conn.execute(
                "INSERT INTO relay_trigger_attempts (outcome, attempts) SELECT * FROM unnest(%s::text[], %s::bigint[])"
                " ON CONFLICT (outcome) DO UPDATE SET attempts = relay_trigger_attempts.attempts + EXCLUDED.attempts",
                (list(counted), list(counted.values())),
            )


def relay_report(conn: psycopg.Connection) -> RelayReport:
    """How recently any relay beat, and the trigger attempts of every relay so far."""
    age = conn.execute("SELECT EXTRACT(EPOCH FROM now() - max(beat_at)) FROM relay_heartbeats").fetchone()[0]
    attempts = conn.execute("SELECT outcome, attempts FROM relay_trigger_attempts ORDER BY outcome").fetchall()
    return RelayReport(None if age is None else max(0.0, float(age)), {outcome: int(n) for outcome, n in attempts})

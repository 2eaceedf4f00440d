"""The ``deliveries`` table: the webhook bridge's inbox, read by the relay; and the relay's beats.

Every statement about deliveries lives here. A delivery is recorded once (its id is the primary key), which
notifies ``NEW_DELIVERY_CHANNEL`` when it is pending; then it is claimed by one relay at a time with
``FOR UPDATE SKIP LOCKED``, so any number of relay processes can sweep the same table without
triggering a delivery twice at the same moment.

The reconcile's statements (``vdi.reconcile.deliveries``) are set-based, each capped at ``limit`` rows, and skip
rows a relay holds: old pending deliveries made due again or leased to the reconcile, failed ones requeued or
dead-lettered, old ones pruned.
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
    # Deliveries refused by Airflow (an operator or the reconcile may requeue them), and those given up for good.
    failed: int = 0
    dead_lettered: int = 0


@dataclass(frozen=True)
class HandedOut:
    """An old pending delivery leased to the reconcile, which triggers it itself (no relay is running)."""

    delivery_id: str
    event: str
    issue_key: str | None
    dag_id: str
    dag_run_id: str
    note: str | None


@dataclass(frozen=True)
class DeadLettered:
    delivery_id: str
    issue_key: str | None
    dag_id: str | None
    last_error: str | None


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


def mark_dead_lettered(conn: psycopg.Connection, delivery_id: str, reason: str, error: str) -> None:
    """Give up on the delivery for good (e.g. its route's DAG does not exist): nothing will trigger it again."""
    conn.execute(
        "UPDATE deliveries SET status = 'dead_lettered', attempts = attempts + 1, last_error = %s, reason = %s"
        " WHERE delivery_id = %s AND status = 'pending'",
        (error[:_MAX_ERROR_CHARS], reason[:_MAX_ERROR_CHARS], delivery_id),
    )


def requeue(conn: psycopg.Connection, delivery_id: str) -> bool:
    """Make a failed or pending delivery due now and notify the relay (for an operator); True when requeued.

    A dead-lettered, ignored, dispatched or unknown delivery is not requeued: ``requeue_refusal`` says why.
    An operator's requeue does not count against the reconcile's cap (``requeues``).
    """
    row = conn.execute(
        "WITH requeued AS (UPDATE deliveries SET status = 'pending', next_attempt_at = now()"
        " WHERE delivery_id = %s AND status IN ('pending', 'failed') AND dag_id IS NOT NULL RETURNING delivery_id)"
        f" SELECT delivery_id, pg_notify('{NEW_DELIVERY_CHANNEL}', '') FROM requeued",
        (delivery_id,),
    ).fetchone()
    return row is not None


def requeue_refusal(conn: psycopg.Connection, delivery_id: str) -> str:
    """Why ``requeue`` would not requeue ``delivery_id``, in words; "" when it would."""
    row = conn.execute("SELECT status, reason, dag_id, dag_run_id FROM deliveries WHERE delivery_id = %s",
                       (delivery_id,)).fetchone()
    if row is None:
        return f"no delivery {delivery_id!r} is recorded (pruned, or never received)"
    status, reason, dag_id, dag_run_id = row
    if status == DeliveryStatus.DEAD_LETTERED:
        return (f"delivery {delivery_id!r} is dead-lettered ({reason}) and is never triggered again: trigger "
                f"{dag_id} by hand with its issue_key once the cause is fixed")
    if status == DeliveryStatus.IGNORED:
        return f"delivery {delivery_id!r} was ignored ({reason}): it has no DAG to trigger"
    if status == DeliveryStatus.DISPATCHED:
        return (f"delivery {delivery_id!r} was dispatched already (run {dag_run_id} of {dag_id}): clear that run "
                f"in Airflow to run it again")
    if dag_id is None:
        return f"delivery {delivery_id!r} has no DAG to trigger"
    return ""


def _interval(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


# Old pending deliveries: received before the threshold. Those a relay holds are skipped (SKIP LOCKED).
_OLD_PENDING = ("SELECT delivery_id FROM deliveries WHERE status = 'pending' AND received_at < now() - %(age)s"
                " AND next_attempt_at {due} now()")
_OLDEST_FIRST = " ORDER BY next_attempt_at LIMIT %(limit)s"


def count_old_pending(conn: psycopg.Connection, older_than_s: float, *, due: bool) -> int:
    """How many pending deliveries received more than ``older_than_s`` ago are due (``due``) or waiting for a
    later attempt (not ``due``)."""
    sql = "SELECT count(*) FROM (" + _OLD_PENDING.format(due="<=" if due else ">") + ") AS old"
    return conn.execute(sql, {"age": _interval(older_than_s)}).fetchone()[0]


def make_old_pending_due(conn: psycopg.Connection, older_than_s: float, limit: int) -> list[str]:
    """Make up to ``limit`` pending deliveries received more than ``older_than_s`` ago, and waiting for a later
    attempt, due now, and notify the relay; their ids."""
    rows = conn.execute(
        "WITH old AS (" + _OLD_PENDING.format(due=">") + _OLDEST_FIRST + " FOR UPDATE SKIP LOCKED),"
        " due AS (UPDATE deliveries d SET next_attempt_at = now() FROM old WHERE d.delivery_id = old.delivery_id"
        " RETURNING d.delivery_id)"
        f" SELECT delivery_id, pg_notify('{NEW_DELIVERY_CHANNEL}', '') FROM due",
        {"age": _interval(older_than_s), "limit": limit},
    ).fetchall()
    return [row[0] for row in rows]


def hand_out_old_pending(conn: psycopg.Connection, older_than_s: float, limit: int,
                         lease_s: float) -> list[HandedOut]:
    """Lease up to ``limit`` due pending deliveries received more than ``older_than_s`` ago to a caller that
    triggers them itself: not due again for ``lease_s`` (a relay, or the next caller, then takes them; a relay's
    repeated trigger gets Airflow's 409 and marks them dispatched). Most overdue first."""
    rows = conn.execute(
        "WITH old AS (" + _OLD_PENDING.format(due="<=") + _OLDEST_FIRST + " FOR UPDATE SKIP LOCKED)"
        " UPDATE deliveries d SET next_attempt_at = now() + %(lease)s, attempts = d.attempts + 1 FROM old"
        " WHERE d.delivery_id = old.delivery_id"
        " RETURNING d.delivery_id, d.event, d.issue_key, d.dag_id, d.dag_run_id, d.note",
        {"age": _interval(older_than_s), "limit": limit, "lease": _interval(lease_s)},
    ).fetchall()
    return [HandedOut(*row) for row in rows]


_FAILED = "SELECT delivery_id FROM deliveries WHERE status = 'failed' AND requeues {cmp} %(max)s"


def count_failed(conn: psycopg.Connection, requeue_max: int, *, spent: bool) -> int:
    """How many failed deliveries have had ``requeue_max`` requeues (``spent``) or fewer."""
    sql = "SELECT count(*) FROM (" + _FAILED.format(cmp=">=" if spent else "<") + ") AS failed"
    return conn.execute(sql, {"max": requeue_max}).fetchone()[0]


def requeue_failed(conn: psycopg.Connection, requeue_max: int, limit: int) -> list[str]:
    """Make up to ``limit`` failed deliveries requeued fewer than ``requeue_max`` times pending and due now,
    counting the requeue, and notify the relay; their ids."""
    rows = conn.execute(
        "WITH failed AS (" + _FAILED.format(cmp="<") + " ORDER BY received_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED),"
        " requeued AS (UPDATE deliveries d SET status = 'pending', next_attempt_at = now(), requeues = d.requeues + 1"
        " FROM failed WHERE d.delivery_id = failed.delivery_id RETURNING d.delivery_id)"
        f" SELECT delivery_id, pg_notify('{NEW_DELIVERY_CHANNEL}', '') FROM requeued",
        {"max": requeue_max, "limit": limit},
    ).fetchall()
    return [row[0] for row in rows]


def dead_letter_failed(conn: psycopg.Connection, requeue_max: int, limit: int) -> list[DeadLettered]:
    """Dead-letter up to ``limit`` failed deliveries already requeued ``requeue_max`` times; what they were."""
    rows = conn.execute(
        "WITH spent AS (" + _FAILED.format(cmp=">=") + " ORDER BY received_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
        " UPDATE deliveries d SET status = 'dead_lettered', reason = %(reason)s FROM spent"
        " WHERE d.delivery_id = spent.delivery_id RETURNING d.delivery_id, d.issue_key, d.dag_id, d.last_error",
        {"max": requeue_max, "limit": limit,
         "reason": f"refused by Airflow after {requeue_max} requeue{'s' if requeue_max != 1 else ''}"},
    ).fetchall()
    return [DeadLettered(*row) for row in rows]


# Finished deliveries past their retention: dispatched and dead-lettered ones after ``retention``, ignored ones
# after ``ignored_retention``. Pending and failed ones are never pruned (they are still in play).
_PRUNABLE = ("SELECT delivery_id FROM deliveries WHERE"
             " (status IN ('dispatched', 'dead_lettered') AND received_at < now() - %(retention)s)"
             " OR (status = 'ignored' AND received_at < now() - %(ignored_retention)s)")


def count_prunable(conn: psycopg.Connection, retention: timedelta, ignored_retention: timedelta) -> int:
    """How many deliveries are past their retention (``prune`` deletes them, ``limit`` at a time)."""
    return conn.execute("SELECT count(*) FROM (" + _PRUNABLE + ") AS old",
                        {"retention": retention, "ignored_retention": ignored_retention}).fetchone()[0]


def prune(conn: psycopg.Connection, retention: timedelta, ignored_retention: timedelta, limit: int) -> int:
    """Delete up to ``limit`` finished deliveries past their retention (see ``_PRUNABLE``); how many."""
    return conn.execute(
        "DELETE FROM deliveries WHERE delivery_id IN (" + _PRUNABLE + " LIMIT %(limit)s FOR UPDATE SKIP LOCKED)",
        {"retention": retention, "ignored_retention": ignored_retention, "limit": limit},
    ).rowcount


def backlog(conn: psycopg.Connection) -> Backlog:
    """How many deliveries wait to be dispatched, how long the oldest has waited, and how many are failed or
    dead-lettered (each part read through its own partial index)."""
    count, age, failed, dead = conn.execute(
        "SELECT pending.n, pending.age, given_up.failed, given_up.dead FROM"
        " (SELECT count(*) AS n, COALESCE(EXTRACT(EPOCH FROM now() - min(received_at)), 0) AS age"
        "  FROM deliveries WHERE status = 'pending') AS pending,"
        " (SELECT count(*) FILTER (WHERE status = 'failed') AS failed,"
        "  count(*) FILTER (WHERE status = 'dead_lettered') AS dead"
        "  FROM deliveries WHERE status IN ('failed', 'dead_lettered')) AS given_up"
    ).fetchone()
    return Backlog(int(count), float(age), int(failed), int(dead))


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

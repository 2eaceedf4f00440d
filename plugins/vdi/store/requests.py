"""Desktop requests (one per Jira issue) and their append-only event log.

Only the run that owns a request (``owner_run_id``, set by ``claim``) moves it on: ``hold`` checks that before a
step works on it, and ``set_outcome`` writes ``ready`` or ``failed`` only for the owner."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from vdi.request import DesktopRequest
from vdi.settings import load
from vdi.states import RequestState, Run, refusal
from vdi.steps import Step

# Per-ticket advisory locks use the two-key form (class, hash of the issue key); PostgreSQL keeps it apart from
# the one-key form that vdi.store.migrate locks with.
_TICKET_LOCK_CLASS = 0x5D1


@dataclass(frozen=True)
class Claim:
    """Whether this run now owns the request; ``reason`` says why not."""

    proceed: bool
    reason: str = ""


def get_request(conn: psycopg.Connection, issue_key: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM desktop_requests WHERE issue_key = %s", (issue_key,)).fetchone()


def _milliseconds(seconds: float) -> str:
    return str(max(1, round(seconds * 1000)))


def bound_waits(conn: psycopg.Connection, seconds: float | None = None) -> None:
    """Make every later statement of ``conn``, and every wait for a lock, fail after ``seconds`` (default
    ``VDI_LOCK_TIMEOUT_S``) rather than hold a task until its own timeout."""
    limit = _milliseconds(load().lock_timeout_s if seconds is None else seconds)
    conn.execute("SELECT set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false)",
                 (limit, limit))


@contextmanager
def ticket_lock(conn: psycopg.Connection, issue_key: str, timeout_s: float | None = None) -> Iterator[None]:
    """Held by one connection at a time per ticket until the block ends (the block runs in a transaction): for
    work on the ticket outside the database, such as a Jira comment, that two runs must not both do. Waiting
    longer than ``timeout_s`` (default ``VDI_LOCK_TIMEOUT_S``) raises ``psycopg.errors.LockNotAvailable``."""
    with conn.transaction():
        _bound_lock_wait(conn, timeout_s)
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_TICKET_LOCK_CLASS, issue_key))
        yield


def _bound_lock_wait(conn: psycopg.Connection, timeout_s: float | None = None) -> None:
    """For the rest of the current transaction, a lock wait fails after ``timeout_s`` (default
    ``VDI_LOCK_TIMEOUT_S``)."""
    conn.execute("SELECT set_config('lock_timeout', %s, true)",
                 (_milliseconds(load().lock_timeout_s if timeout_s is None else timeout_s),))


def claim(conn: psycopg.Connection, request: DesktopRequest, run: Run, trigger_status: str) -> Claim:
    """Create or take over the request for ``run`` in one transaction (row-locked), logging the event; whether
    it may is ``vdi.states.refusal``'s to say (with the ticket's status as ``validate`` read it). A refused
    claim writes nothing."""
    request_id = request.request_id
    refused = None
    with conn.transaction() as transaction:
        _bound_lock_wait(conn)
        conn.execute(
            "INSERT INTO desktop_requests (request_id, issue_key, project_key, desktop_user, bundle, os, state)"
            # No conflict target: request_id and issue_key are both unique (and derived from each other), and a
            # concurrent insert may collide on either; with one named, a collision on the other is an error.
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (request_id, request.issue_key, request.project_key, request.user.login, request.bundle, request.os,
             RequestState.RECEIVED.value),
        )
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute("SELECT * FROM desktop_requests WHERE issue_key = %s FOR UPDATE",
                              (request.issue_key,)).fetchone()
        if reason := refusal(request.issue_key, row, run, request.status, trigger_status):
            refused = Claim(False, reason)
            raise psycopg.Rollback(transaction)  # the row inserted above, if any, goes with it
        conn.execute(
            "UPDATE desktop_requests SET state = %s, step = %s, owner_run_id = %s, desktop_user = %s,"
            " bundle = %s, os = %s, updated_at = now() WHERE request_id = %s",
            (RequestState.IN_PROGRESS.value, Step.PERSIST.value, run.run_id, request.user.login, request.bundle,
             request.os, request_id),
        )
        record_event(conn, request_id, Step.PERSIST, "claimed",
                     {"run_id": run.run_id, "previous_state": row["state"]})
    return refused or Claim(True)


def record_invalid(conn: psycopg.Connection, request_id: uuid.UUID, issue_key: str, detail: dict[str, Any]) -> None:
    """A ticket that cannot become a request: recorded as rejected at ``validate`` (unless it is already
    under way or done), with the problems in the event log."""
    with conn.transaction():
        # Insert-or-nothing, then update: an upsert names one conflict target, and a concurrent insert may collide
        # on the other unique column (see claim).
        conn.execute(
            "INSERT INTO desktop_requests (request_id, issue_key, project_key, state, step)"
            " VALUES (%s, %s, %s, 'rejected', %s) ON CONFLICT DO NOTHING",
            (request_id, issue_key, issue_key.rsplit("-", 1)[0], Step.VALIDATE.value),
        )
        conn.execute(
            "UPDATE desktop_requests SET state = 'rejected', step = %s, updated_at = now()"
            " WHERE issue_key = %s AND state IN ('received', 'failed', 'rejected')",
            (Step.VALIDATE.value, issue_key),
        )
        record_event(conn, request_id, Step.VALIDATE, "invalid", detail)


def highest_issue_number(conn: psycopg.Connection) -> int:
    """The highest issue number among the requests (0 when there is none)."""
    return conn.execute("SELECT max(split_part(issue_key, '-', 2)::int) FROM desktop_requests").fetchone()[0] or 0


def hold(conn: psycopg.Connection, request_id: uuid.UUID, run: Run, step: Step) -> bool:
    """Whether ``run`` still owns the request (in progress, or failed: a cleared task of the owner resumes it,
    and the request is in progress again, logged as ``resumed``); False when another run took it over or it is
    settled."""
    with conn.transaction():
        _bound_lock_wait(conn)
        row = conn.execute(
            "SELECT state FROM desktop_requests WHERE request_id = %s AND owner_run_id = %s"
            " AND state IN ('in_progress', 'failed') FOR UPDATE",
            (request_id, run.run_id),
        ).fetchone()
        if row is None:
            return False
        if row[0] == RequestState.FAILED:
            conn.execute("UPDATE desktop_requests SET state = 'in_progress', step = %s, updated_at = now()"
                         " WHERE request_id = %s", (str(step), request_id))
            record_event(conn, request_id, step, "resumed", {"run_id": run.run_id})
    return True


def set_outcome(conn: psycopg.Connection, request_id: uuid.UUID, run: Run, state: RequestState, step: Step,
                outcome: str, detail: dict[str, Any] | None = None, merge: dict[str, Any] | None = None) -> bool:
    """Move the request to ``state`` (``ready``, ``failed``), merge ``merge`` into its detail and log it, only
    when ``run`` owns it (in progress, failed, or already in ``state``: a rerun of the step); False, writing
    nothing, otherwise."""
    with conn.transaction():
        moved = conn.execute(
            "UPDATE desktop_requests SET state = %s, step = %s, detail = detail || %s, updated_at = now()"
            " WHERE request_id = %s AND owner_run_id = %s AND state IN ('in_progress', 'failed', %s)",
            (state.value, str(step), Jsonb(merge or {}), request_id, run.run_id, state.value),
        ).rowcount
        if moved:
            record_event(conn, request_id, step, outcome, detail)
    return bool(moved)


def set_state(conn: psycopg.Connection, request_id: uuid.UUID, state: RequestState, step: Step,
              outcome: str, detail: dict[str, Any] | None = None) -> None:
    """Move the request to ``state`` at ``step`` and log it, in one transaction."""
    with conn.transaction():
        conn.execute(
            "UPDATE desktop_requests SET state = %s, step = %s, updated_at = now() WHERE request_id = %s",
            (state.value, str(step), request_id),
        )
        record_event(conn, request_id, step, outcome, detail)


def set_instance(conn: psycopg.Connection, request_id: uuid.UUID, instance_id: str, detail: dict[str, Any]) -> None:
    with conn.transaction():
        conn.execute(
            "UPDATE desktop_requests SET instance_id = %s, step = %s, updated_at = now() WHERE request_id = %s",
            (instance_id, Step.LAUNCH_INSTANCE.value, request_id),
        )
        record_event(conn, request_id, Step.LAUNCH_INSTANCE, "launched", {"instance_id": instance_id, **detail})


def next_generation(conn: psycopg.Connection, request_id: uuid.UUID, gone_instance_id: str,
                    detail: dict[str, Any]) -> int:
    """The launch generation after ``gone_instance_id`` (the recorded instance, terminated or lost): bumped
    once, forgetting that instance, however often a retried launch asks."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE desktop_requests SET launch_generation = launch_generation + 1, instance_id = NULL,"
            " updated_at = now() WHERE request_id = %s AND instance_id = %s RETURNING launch_generation",
            (request_id, gone_instance_id),
        ).fetchone()
        if row is not None:
            record_event(conn, request_id, Step.LAUNCH_INSTANCE, "new_generation",
                         {"gone_instance_id": gone_instance_id, "generation": row[0], **detail})
            return row[0]
    return conn.execute("SELECT launch_generation FROM desktop_requests WHERE request_id = %s",
                        (request_id,)).fetchone()[0]


def seconds_since_launch(conn: psycopg.Connection, request_id: uuid.UUID, instance_id: str) -> float | None:
    """Seconds (by the database's clock) since the launch step first recorded ``instance_id``; None when it
    never did."""
    seconds = conn.execute(
        "SELECT extract(epoch FROM clock_timestamp() - min(at)) FROM request_events WHERE request_id = %s"
        " AND step = %s AND outcome = 'launched' AND detail->>'instance_id' = %s",
        (request_id, Step.LAUNCH_INSTANCE.value, instance_id),
    ).fetchone()[0]
    return None if seconds is None else float(seconds)


def merge_detail(conn: psycopg.Connection, request_id: uuid.UUID, detail: dict[str, Any]) -> None:
    conn.execute("UPDATE desktop_requests SET detail = detail || %s, updated_at = now() WHERE request_id = %s",
                 (Jsonb(detail), request_id))


def record_event(conn: psycopg.Connection, request_id: uuid.UUID, step: Step, outcome: str,
                 detail: dict[str, Any] | None = None) -> None:
    conn.execute("INSERT INTO request_events (request_id, step, outcome, detail) VALUES (%s, %s, %s, %s)",
                 (request_id, str(step), outcome, Jsonb(detail or {})))


def events(conn: psycopg.Connection, request_id: uuid.UUID) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT step, outcome, detail, at FROM request_events WHERE request_id = %s"
                           " ORDER BY event_id", (request_id,)).fetchall()


def guardrail_counts(conn: psycopg.Connection, request: DesktopRequest) -> dict[str, int]:
    """The user's other desktops (in progress or ready) and the other requests in progress."""
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE desktop_user = %s AND state IN ('in_progress', 'ready')),"
        "       count(*) FILTER (WHERE state = 'in_progress')"
        " FROM desktop_requests WHERE issue_key <> %s",
        (request.user.login, request.issue_key),
    ).fetchone()
    return {"user_desktops": row[0], "in_flight": row[1]}

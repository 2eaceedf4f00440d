"""Desktop requests (one per Jira issue) and their append-only event log."""

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


@contextmanager
def ticket_lock(conn: psycopg.Connection, issue_key: str) -> Iterator[None]:
    """Held by one connection at a time per ticket until the block ends (the block runs in a transaction): for
    work on the ticket outside the database, such as a Jira comment, that two runs must not both do."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_TICKET_LOCK_CLASS, issue_key))
        yield


def claim(conn: psycopg.Connection, request: DesktopRequest, run: Run, trigger_status: str) -> Claim:
    """Create or take over the request for ``run`` in one transaction (row-locked), logging the event; whether
    it may is ``vdi.states.refusal``'s to say (with the ticket's status as ``validate`` read it). A refused
    claim writes nothing."""
    request_id = request.request_id
    refused = None
    with conn.transaction() as transaction:
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

"""Desktop removals (one per Jira *Desktop Removal* ticket), their event log, and the desktop requests they hold.

A removal is claimed and held as a request is (``vdi.states.refusal``, ``owner_run_id``): only its owning run
moves it on. The requests it takes down are marked with its key (``desktop_requests.removal_key``) and the state
``removing`` while it works on them, then ``removed``; provisioning leaves such a request alone."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from vdi.request import request_id_for
from vdi.states import RequestState, Run, refusal
from vdi.steps import RemovalStep
from vdi.store.requests import Claim, _bound_lock_wait
from vdi.store.requests import record_event as record_request_event

DAG_ID = "vdi_deprovision"
# A user's desktops a removal without a link takes down: every request that has (or may yet have) an instance.
LIVE_STATES = (RequestState.IN_PROGRESS.value, RequestState.READY.value, RequestState.FAILED.value)

# What became of a desktop request a removal names (``take_target``).
TAKEN = "taken"
ALREADY_REMOVED = "already removed"
NOT_PROVISIONED = "no desktop was ever made for it"
HELD_ELSEWHERE = "being removed by another removal"


def removal_id_for(issue_key: str) -> uuid.UUID:
    return request_id_for(issue_key)


def get_removal(conn: psycopg.Connection, issue_key: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM desktop_removals WHERE issue_key = %s", (issue_key,)).fetchone()


def claim(conn: psycopg.Connection, issue_key: str, run: Run, ticket_status: str | None,
          trigger_status: str) -> Claim:
    """Create or take over the removal for ``run`` in one transaction (row-locked), as ``requests.claim`` does
    for a request; a refused claim writes nothing."""
    removal_id = removal_id_for(issue_key)
    refused = None
    with conn.transaction() as transaction:
        _bound_lock_wait(conn)
        conn.execute("INSERT INTO desktop_removals (removal_id, issue_key, project_key, state)"
                     " VALUES (%s, %s, %s, 'received') ON CONFLICT DO NOTHING",
                     (removal_id, issue_key, issue_key.rsplit("-", 1)[0]))
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute("SELECT * FROM desktop_removals WHERE issue_key = %s FOR UPDATE",
                              (issue_key,)).fetchone()
        if reason := refusal(issue_key, row, run, ticket_status, trigger_status, DAG_ID):
            refused = Claim(False, reason)
            raise psycopg.Rollback(transaction)
        conn.execute("UPDATE desktop_removals SET state = 'in_progress', step = %s, owner_run_id = %s,"
                     " updated_at = now() WHERE removal_id = %s", (RemovalStep.CLAIM.value, run.run_id, removal_id))
        record_event(conn, removal_id, RemovalStep.CLAIM, "claimed",
                     {"run_id": run.run_id, "previous_state": row["state"]})
    return refused or Claim(True)


def hold(conn: psycopg.Connection, removal_id: uuid.UUID, run: Run, step: RemovalStep) -> bool:
    """Whether ``run`` still owns the removal (a failed one is resumed by its own run, logged ``resumed``)."""
    with conn.transaction():
        _bound_lock_wait(conn)
        row = conn.execute("SELECT state FROM desktop_removals WHERE removal_id = %s AND owner_run_id = %s"
                           " AND state IN ('in_progress', 'failed') FOR UPDATE", (removal_id, run.run_id)).fetchone()
        if row is None:
            return False
        if row[0] == RequestState.FAILED:
            conn.execute("UPDATE desktop_removals SET state = 'in_progress', step = %s, updated_at = now()"
                         " WHERE removal_id = %s", (str(step), removal_id))
            record_event(conn, removal_id, step, "resumed", {"run_id": run.run_id})
    return True


def set_targets(conn: psycopg.Connection, removal_id: uuid.UUID, targets: list[str],
                detail: dict[str, Any]) -> list[str]:
    """Add ``targets`` to the removal's (a rerun keeps what an earlier try found); all of them, in order."""
    return conn.execute(
        "UPDATE desktop_removals SET targets = ARRAY(SELECT DISTINCT unnest(targets || %s::text[]) ORDER BY 1),"
        " detail = detail || %s, step = %s, updated_at = now() WHERE removal_id = %s RETURNING targets",
        (targets, Jsonb(detail), RemovalStep.RESOLVE.value, removal_id)).fetchone()[0]


def live_desktops(conn: psycopg.Connection, login: str) -> list[str]:
    """The issue keys of the user's requests that have, or may yet have, a desktop."""
    rows = conn.execute("SELECT issue_key FROM desktop_requests WHERE lower(desktop_user) = lower(%s)"
                        " AND state = ANY(%s) ORDER BY issue_key", (login, list(LIVE_STATES))).fetchall()
    return [row[0] for row in rows]


def take_target(conn: psycopg.Connection, removal_key: str, target_key: str, run: Run) -> str:
    """Mark the request ``target_key`` as being removed by this removal, owned by ``run``: ``TAKEN``; or why
    not. A request held by another removal in progress is left to it; one a provisioning run works on is taken
    from that run (whose next step finds it no longer owns it)."""
    with conn.transaction():
        _bound_lock_wait(conn)
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "SELECT r.request_id, r.state, r.owner_run_id, r.removal_key, m.state AS holder_state"
                " FROM desktop_requests r LEFT JOIN desktop_removals m ON m.issue_key = r.removal_key"
                " WHERE r.issue_key = %s FOR UPDATE OF r", (target_key,)).fetchone()
        if row is None:
            return NOT_PROVISIONED
        if row["state"] == RequestState.REMOVED:
            return ALREADY_REMOVED
        if (row["state"] == RequestState.REMOVING and row["removal_key"] != removal_key
                and row["holder_state"] == RequestState.IN_PROGRESS):
            return HELD_ELSEWHERE
        if (row["state"], row["owner_run_id"], row["removal_key"]) == (RequestState.REMOVING, run.run_id,
                                                                       removal_key):
            return TAKEN
        conn.execute("UPDATE desktop_requests SET state = 'removing', step = %s, owner_run_id = %s,"
                     " removal_key = %s, updated_at = now() WHERE request_id = %s",
                     (RemovalStep.RESOLVE.value, run.run_id, removal_key, row["request_id"]))
        record_request_event(conn, row["request_id"], RemovalStep.RESOLVE, "removing",
                             {"removal": removal_key, "run_id": run.run_id, "previous_state": row["state"],
                              "previous_owner": row["owner_run_id"]})
    return TAKEN


def held_requests(conn: psycopg.Connection, removal_key: str) -> list[dict[str, Any]]:
    """The requests this removal holds (``removing``) or has removed, by issue key."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM desktop_requests WHERE removal_key = %s"
                           " AND state IN ('removing', 'removed') ORDER BY issue_key", (removal_key,)).fetchall()


def mark_removed(conn: psycopg.Connection, request_id: uuid.UUID, removal_key: str, run: Run,
                 detail: dict[str, Any]) -> bool:
    """``removed``, logged with ``detail``, when ``run`` holds the request for this removal; True when it moved
    now (False: already removed, or not held)."""
    with conn.transaction():
        moved = conn.execute(
            "UPDATE desktop_requests SET state = 'removed', step = %s, updated_at = now() WHERE request_id = %s"
            " AND removal_key = %s AND owner_run_id = %s AND state = 'removing'",
            (RemovalStep.FINISH.value, request_id, removal_key, run.run_id)).rowcount
        if moved:
            record_request_event(conn, request_id, RemovalStep.FINISH, "removed", {"removal": removal_key, **detail})
    return bool(moved)


def set_outcome(conn: psycopg.Connection, removal_id: uuid.UUID, run: Run, state: RequestState, step: RemovalStep,
                outcome: str, detail: dict[str, Any] | None = None, merge: dict[str, Any] | None = None) -> bool:
    """Move the removal to ``state`` (``removed``, ``failed``) and log it, only for the owning run (in progress,
    failed, or already in ``state``); False, writing nothing, otherwise."""
    with conn.transaction():
        moved = conn.execute(
            "UPDATE desktop_removals SET state = %s, step = %s, detail = detail || %s, updated_at = now()"
            " WHERE removal_id = %s AND owner_run_id = %s AND state IN ('in_progress', 'failed', %s)",
            (state.value, str(step), Jsonb(merge or {}), removal_id, run.run_id, state.value)).rowcount
        if moved:
            record_event(conn, removal_id, step, outcome, detail)
    return bool(moved)


def merge_detail(conn: psycopg.Connection, removal_id: uuid.UUID, detail: dict[str, Any]) -> None:
    conn.execute("UPDATE desktop_removals SET detail = detail || %s, updated_at = now() WHERE removal_id = %s",
                 (Jsonb(detail), removal_id))


def record_event(conn: psycopg.Connection, removal_id: uuid.UUID, step: RemovalStep, outcome: str,
                 detail: dict[str, Any] | None = None) -> None:
    conn.execute("INSERT INTO removal_events (removal_id, step, outcome, detail) VALUES (%s, %s, %s, %s)",
                 (removal_id, str(step), outcome, Jsonb(detail or {})))


def events(conn: psycopg.Connection, removal_id: uuid.UUID) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT step, outcome, detail, at FROM removal_events WHERE removal_id = %s"
                           " ORDER BY event_id", (removal_id,)).fetchall()

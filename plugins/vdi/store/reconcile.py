"""The reconcile's SQL: what the database says about the fleet, compared set-wise with what EC2, the broker and
Jira list (each listing passed in as arrays, one statement per comparison), and the findings it reports once.

A finding (``reconcile_findings``) is one thing out of step, named by its kind and subject (an instance id, an
issue key, a pool id). ``note_findings`` records what a run saw and says which findings are new: only those are
reported; one still there is counted, one no longer seen is resolved.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from vdi.states import RequestState
from vdi.store.requests import record_event

RECONCILE_STEP = "reconcile"


@dataclass(frozen=True)
class Finding:
    subject: str
    issue_key: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def _rows(conn: psycopg.Connection, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchall()


# --- comparisons --------------------------------------------------------------------------------------------
def orphan_instances(conn: psycopg.Connection, instances: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The live instances tagged with a request (``instance_id``, ``request_id``, ``issue_key`` each) that no live
    request owns: no such request, one rejected or removed, or a ready one whose desktop is another instance."""
    return _rows(conn, """
        SELECT i.instance_id, i.request_id, i.issue_key, r.state
        FROM unnest(%s::text[], %s::text[], %s::text[]) AS i(instance_id, request_id, issue_key)
        LEFT JOIN desktop_requests r ON r.request_id::text = i.request_id
        WHERE r.request_id IS NULL OR r.state IN ('rejected', 'removed')
           OR (r.state = 'ready' AND r.instance_id IS DISTINCT FROM i.instance_id)
        ORDER BY i.instance_id""", (
        [i["instance_id"] for i in instances], [i["request_id"] for i in instances],
        [i["issue_key"] for i in instances]))


def lost_desktops(conn: psycopg.Connection, instances: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ready requests whose instance is not among the live ``instances`` (``instance_id``, ``state``), or is
    stopping or stopped there; ``instance_state`` is ``gone`` for the first."""
    return _rows(conn, """
        SELECT r.request_id, r.issue_key, r.instance_id, r.desktop_user, r.bundle,
               COALESCE(i.state, 'gone') AS instance_state
        FROM desktop_requests r
        LEFT JOIN unnest(%s::text[], %s::text[]) AS i(instance_id, state) ON i.instance_id = r.instance_id
        WHERE r.state = 'ready' AND (i.instance_id IS NULL OR i.state IN ('stopping', 'stopped'))
        ORDER BY r.issue_key""", (
        [i["instance_id"] for i in instances], [i["state"] for i in instances]))


def orphan_pools(conn: psycopg.Connection, pools: Sequence[dict[str, Any]],
                 live_issue_keys: Iterable[str]) -> list[dict[str, Any]]:
    """The product's broker pools (``pool_id``, ``issue_key``) with no live instance of their ticket whose request
    is not live either (none, rejected or removed): a failed or ready request may still need its pool."""
    return _rows(conn, """
        SELECT p.pool_id, p.issue_key, r.desktop_user, r.state
        FROM unnest(%s::int[], %s::text[]) AS p(pool_id, issue_key)
        LEFT JOIN desktop_requests r ON r.issue_key = p.issue_key
        WHERE (r.request_id IS NULL OR r.state IN ('rejected', 'removed')) AND NOT (p.issue_key = ANY(%s::text[]))
        ORDER BY p.pool_id""", (
        [p["pool_id"] for p in pools], [p["issue_key"] for p in pools], list(live_issue_keys)))


def request_projects(conn: psycopg.Connection) -> list[str]:
    """The Jira projects that have requests whose ticket's status means something (in progress, ready, failed)."""
    rows = conn.execute("SELECT DISTINCT project_key FROM desktop_requests"
                        " WHERE state IN ('in_progress', 'ready', 'failed') ORDER BY 1").fetchall()
    return [row[0] for row in rows]


def status_mismatches(conn: psycopg.Connection, tickets: Sequence[tuple[str, str]], *, ready: str,
                      in_progress: str, failed: str) -> list[dict[str, Any]]:
    """The requests whose ticket (``(issue_key, status)`` pairs) disagrees with their state: ready but not in the
    ``ready`` status; failed but in progress; in progress but ready or failed. (A failed request's ticket may be in
    Ready: the workflow leads nowhere from there, and the reconcile fails a ready desktop that was lost.)"""
    return _rows(conn, """
        SELECT r.request_id, r.issue_key, r.state, t.status
        FROM desktop_requests r
        JOIN unnest(%s::text[], %s::text[]) AS t(issue_key, status) ON t.issue_key = r.issue_key
        WHERE (r.state = 'ready' AND lower(t.status) <> lower(%s))
           OR (r.state = 'failed' AND lower(t.status) = lower(%s))
           OR (r.state = 'in_progress' AND lower(t.status) IN (lower(%s), lower(%s)))
        ORDER BY r.issue_key""", (
        [t[0] for t in tickets], [t[1] for t in tickets], ready, in_progress, ready, failed))


def ticket_requests(conn: psycopg.Connection, tickets: Sequence[tuple[str, str, datetime]],
                    window_s: float) -> list[dict[str, Any]]:
    """For each ticket (``(issue_key, dag_id, updated)``): its request row's columns (None when it has none),
    its removal's state (``removal_state``, None when it is no removal ticket or has none yet), ``pending``: a
    delivery for it routed to that DAG waits, and ``delivered``: one waits or was received after the ticket's last
    update less ``window_s``."""
    return _rows(conn, """
        SELECT t.issue_key, t.dag_id, r.request_id, r.state, r.owner_run_id, r.step, r.detail,
               EXISTS (SELECT 1 FROM deliveries d WHERE d.issue_key = t.issue_key AND d.dag_id = t.dag_id
                       AND (d.status = 'pending' OR d.received_at >= t.updated - make_interval(secs => %s)))
                   AS delivered,
               EXISTS (SELECT 1 FROM deliveries d WHERE d.issue_key = t.issue_key AND d.dag_id = t.dag_id
                       AND d.status = 'pending') AS pending,
               (SELECT m.state FROM desktop_removals m WHERE m.issue_key = t.issue_key) AS removal_state
        FROM unnest(%s::text[], %s::text[], %s::timestamptz[]) AS t(issue_key, dag_id, updated)
        LEFT JOIN desktop_requests r ON r.issue_key = t.issue_key
        ORDER BY t.issue_key""", (
        window_s, [t[0] for t in tickets], [t[1] for t in tickets], [t[2] for t in tickets]))


def existing_deliveries(conn: psycopg.Connection, delivery_ids: Sequence[str]) -> set[str]:
    """Which of ``delivery_ids`` are recorded."""
    rows = conn.execute("SELECT delivery_id FROM deliveries WHERE delivery_id = ANY(%s)",
                        (list(delivery_ids),)).fetchall()
    return {row[0] for row in rows}


def stuck_requests(conn: psycopg.Connection, deadlines_s: dict[RequestState, float]) -> list[dict[str, Any]]:
    """Requests left unchanged in a state for longer than that state's deadline, oldest first."""
    states = list(deadlines_s)
    return _rows(conn, """
        SELECT r.request_id, r.issue_key, r.state, r.step, r.owner_run_id, r.instance_id,
               extract(epoch FROM now() - r.updated_at) AS age_s
        FROM desktop_requests r
        JOIN unnest(%s::text[], %s::float8[]) AS d(state, deadline_s) ON d.state = r.state
        WHERE r.updated_at < now() - make_interval(secs => d.deadline_s)
        ORDER BY r.updated_at""", (
        [str(s) for s in states], [float(deadlines_s[s]) for s in states]))


# --- fixes --------------------------------------------------------------------------------------------------
def mark_desktop_lost(conn: psycopg.Connection, request_id, instance_id: str | None, instance_state: str) -> bool:
    """A ready request whose instance is gone or stopped becomes ``failed`` at the reconcile (so that a manual
    run, or the reconcile's re-provisioning, takes it over), logged; False when it is no longer ready with that
    instance (someone else moved it meanwhile)."""
    with conn.transaction():
        moved = conn.execute(
            "UPDATE desktop_requests SET state = 'failed', step = %s, updated_at = now(),"
            " detail = detail || %s WHERE request_id = %s AND state = 'ready' AND instance_id IS NOT DISTINCT FROM %s",
            (RECONCILE_STEP, Jsonb({"failure": {"step": RECONCILE_STEP, "ticket_failed": False,
                                                "instance_state": instance_state}}), request_id, instance_id),
        ).rowcount
        if moved:
            record_event(conn, request_id, RECONCILE_STEP, "desktop_lost",  # type: ignore[arg-type]
                         {"instance_id": instance_id, "instance_state": instance_state})
    return bool(moved)


def record_request_event(conn: psycopg.Connection, request_id, outcome: str, detail: dict[str, Any]) -> None:
    record_event(conn, request_id, RECONCILE_STEP, outcome, detail)  # type: ignore[arg-type]


def mark_ticket_failed(conn: psycopg.Connection, request_id) -> None:
    """Record that the failed request's ticket is now in Failed (Retry then takes it over)."""
    conn.execute("UPDATE desktop_requests SET detail = jsonb_set(detail, '{failure,ticket_failed}', 'true', true),"
                 " updated_at = now() WHERE request_id = %s AND state = 'failed' AND detail ? 'failure'",
                 (request_id,))


# --- findings -----------------------------------------------------------------------------------------------
def open_findings(conn: psycopg.Connection, kind: str, subjects: Sequence[str]) -> set[str]:
    """Which of ``subjects`` are open findings of ``kind`` already (read only: what a dry run would not report)."""
    rows = conn.execute("SELECT subject FROM reconcile_findings WHERE kind = %s AND resolved_at IS NULL"
                        " AND subject = ANY(%s)", (kind, list(subjects))).fetchall()
    return {row[0] for row in rows}


def note_findings(conn: psycopg.Connection, kind: str, found: Sequence[Finding]) -> set[str]:
    """Record that this run saw ``found`` (all of ``kind`` there is); the subjects that are new (never seen, or
    seen again after being resolved). Open findings of ``kind`` not seen now are resolved as ``gone``."""
    subjects = [f.subject for f in found]
    with conn.transaction():
        rows = conn.execute(
            "INSERT INTO reconcile_findings (kind, subject, issue_key, detail, action)"
            " SELECT %s, s.subject, s.issue_key, s.detail, 'reported'"
            " FROM unnest(%s::text[], %s::text[], %s::jsonb[]) AS s(subject, issue_key, detail)"
            " ON CONFLICT (kind, subject) DO UPDATE SET last_seen = now(), detail = EXCLUDED.detail,"
            "  first_seen = CASE WHEN reconcile_findings.resolved_at IS NULL THEN reconcile_findings.first_seen"
            "                    ELSE now() END,"
            "  action = CASE WHEN reconcile_findings.resolved_at IS NULL THEN reconcile_findings.action"
            "                ELSE 'reported' END,"
            "  resolved_at = NULL"
            " RETURNING subject, first_seen = now() AS new",
            (kind, subjects, [f.issue_key for f in found], [Jsonb(f.detail) for f in found]),
        ).fetchall()
        conn.execute("UPDATE reconcile_findings SET resolved_at = now(), action = 'gone'"
                     " WHERE kind = %s AND resolved_at IS NULL AND NOT (subject = ANY(%s))", (kind, subjects))
    return {subject for subject, new in rows if new}


def resolve_finding(conn: psycopg.Connection, kind: str, subject: str, action: str) -> None:
    """The finding was fixed by ``action`` (``terminated``, ``removed``, ...)."""
    conn.execute("UPDATE reconcile_findings SET resolved_at = now(), action = %s WHERE kind = %s AND subject = %s",
                 (action, kind, subject))


def set_finding_action(conn: psycopg.Connection, kind: str, subject: str, action: str) -> None:
    """What was done about an open finding (``reported``, ``deferred``, ``fix_failed``...)."""
    conn.execute("UPDATE reconcile_findings SET action = %s WHERE kind = %s AND subject = %s AND resolved_at IS NULL",
                 (action, kind, subject))


def open_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Open findings by kind."""
    rows = conn.execute("SELECT kind, count(*) FROM reconcile_findings WHERE resolved_at IS NULL GROUP BY kind"
                        " ORDER BY kind").fetchall()
    return {kind: int(n) for kind, n in rows}


def record_run(conn: psycopg.Connection, run_id: str, summary: dict[str, Any]) -> None:
    """The run's summary in the event log (a rerun of the run's report replaces it)."""
    conn.execute("INSERT INTO reconcile_runs (run_id, summary) VALUES (%s, %s) ON CONFLICT (run_id)"
                 " DO UPDATE SET summary = EXCLUDED.summary, finished_at = now()", (run_id, Jsonb(summary)))


def run_summary(conn: psycopg.Connection, run_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT summary FROM reconcile_runs WHERE run_id = %s", (run_id,)).fetchone()
    return row[0] if row else None

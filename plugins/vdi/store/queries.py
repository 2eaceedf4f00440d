"""Read-only queries for operators (the ``vdi`` command): a request with its history and its deliveries, and one
delivery. Nothing here writes."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

_REQUEST_COLUMNS = ("request_id, issue_key, project_key, desktop_user, bundle, os, state, step, owner_run_id,"
                    " instance_id, launch_generation, detail, created_at, updated_at")
_DELIVERY_COLUMNS = ("delivery_id, received_at, event, issue_key, status, reason, dag_id, dag_run_id, attempts,"
                     " next_attempt_at, last_error, dispatched_at, note")


def request_overview(conn: psycopg.Connection, issue_key: str) -> dict[str, Any] | None:
    """The ticket's request, its event log (oldest first) and the deliveries about it (newest first); None when
    the product has no request for that ticket and no delivery about it."""
    with conn.cursor(row_factory=dict_row) as cur:
        request = cur.execute(f"SELECT {_REQUEST_COLUMNS} FROM desktop_requests WHERE issue_key = %s",
                              (issue_key,)).fetchone()
        events = []
        if request is not None:
            events = cur.execute("SELECT step, outcome, detail, at FROM request_events WHERE request_id = %s"
                                 " ORDER BY event_id", (request["request_id"],)).fetchall()
        found = cur.execute(f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE issue_key = %s"
                            " ORDER BY received_at DESC, delivery_id", (issue_key,)).fetchall()
    if request is None and not found:
        return None
    return {"request": request, "events": events, "deliveries": found}


def delivery(conn: psycopg.Connection, delivery_id: str) -> dict[str, Any] | None:
    """One delivery (without its payload); None when no delivery has that id."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE delivery_id = %s",
                           (delivery_id,)).fetchone()

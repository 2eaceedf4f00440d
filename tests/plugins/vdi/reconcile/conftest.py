"""The reconcile's parts without Airflow: the real PostgreSQL, the Jira and Leostream sandboxes served over HTTP,
moto for EC2, and the clients built from Airflow connections in the environment, as the tasks build them
(the fixtures ``conn``, ``ticket``, ``ec2`` and ``broker`` of tests/plugins/vdi/conftest.py)."""

from __future__ import annotations

import uuid

from psycopg.types.json import Jsonb

from vdi.request import request_id_for


def insert_request(conn, issue_key: str, state: str, *, instance_id: str | None = None, user: str | None = "alice",
                   step: str | None = None, owner: str | None = None, unchanged_s: float = 0,
                   detail: dict | None = None) -> uuid.UUID:
    """A request row as the DAGs leave it (the reconcile reads rows; how they came to be is not its business)."""
    request_id = request_id_for(issue_key)
    conn.execute(
        "INSERT INTO desktop_requests (request_id, issue_key, project_key, desktop_user, bundle, os, state, step,"
        " owner_run_id, instance_id, detail, updated_at)"
        " VALUES (%s, %s, %s, %s, 'standard', 'linux', %s, %s, %s, %s, %s, now() - make_interval(secs => %s))",
        (request_id, issue_key, issue_key.rsplit("-", 1)[0], user, state, step, owner, instance_id,
         Jsonb(detail or {}), unchanged_s))
    return request_id


def request_row(conn, issue_key: str) -> dict:
    from vdi.store.requests import get_request

    return get_request(conn, issue_key)


def findings(conn) -> list[tuple]:
    return conn.execute("SELECT kind, subject, action, resolved_at IS NULL FROM reconcile_findings"
                        " ORDER BY kind, subject").fetchall()

"""The bridge's own database role (``sandbox.stack.postgres.ensure_bridge_role``, grants in migration 0008), on
the real PostgreSQL: the bridge records and the relay claims, marks and beats as that role; every other table of
the app is refused to it."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.conninfo import make_conninfo

from sandbox.stack import postgres
from tests.webhook_bridge.conftest import SECRET, jira_body, make_app, signed_headers  # noqa: F401  (fixture)
from vdi.store import deliveries
from vdi.store.migrate import migrate


def as_role(url: str, role: str, password: str) -> str:
    return make_conninfo(url, user=role, password=password)


@pytest.fixture
def bridge_url(postgres_server_url, app_database_url):
    """The migrated app database as a new bridge role (unique to this test: roles are the cluster's)."""
    role, password = f"vdi_bridge_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    database = urlsplit(app_database_url).path.lstrip("/")
    postgres.ensure_bridge_role(postgres_server_url, database, password, role=role)
    yield as_role(app_database_url, role, password)
    with psycopg.connect(app_database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_the_bridge_records_and_the_relay_claims_marks_and_beats_as_the_bridge_role(bridge_url, make_app):  # noqa: F811
    http = make_app({"DATABASE_URL": bridge_url, "WEBHOOK_SECRETS": [SECRET], "AIRFLOW_API_URL": None,
                     "DB_TIMEOUT_S": 2}).test_client()
    body = jira_body()
    assert http.post("/webhooks/jira", data=body, headers=signed_headers(body, "role-1")).status_code == 202
    assert http.post("/webhooks/jira", data=body, headers=signed_headers(body, "role-1")).status_code == 200
    assert http.get("/metrics").status_code == 200
    with psycopg.connect(bridge_url, autocommit=True) as conn:
        deliveries.listen(conn)
        [claimed] = deliveries.claim_due(conn)
        deliveries.mark_retry(conn, claimed.delivery_id, "Airflow was busy", 0)
        [claimed] = deliveries.claim_due(conn)
        deliveries.mark_dispatched(conn, [claimed.delivery_id])
        deliveries.relay_beat(conn, "host:1", {"created": 1})
        deliveries.relay_beat(conn, "host:1", {}, alive=False)
        assert deliveries.backlog(conn).pending == 0
        assert deliveries.get_status(conn, "role-1") == "dispatched"


@pytest.mark.parametrize("statement", [
    "SELECT count(*) FROM desktop_requests",
    "UPDATE desktop_requests SET state = 'ready'",
    "SELECT count(*) FROM request_events",
    "SELECT count(*) FROM desktop_removals",
    "SELECT count(*) FROM vdi_schema_version",
    "DELETE FROM deliveries",
    "CREATE TABLE mine (id int)",
    "SELECT vdi_grant_bridge(current_user)",
])
def test_the_bridge_role_is_refused_everything_else(bridge_url, statement):
    with psycopg.connect(bridge_url, autocommit=True) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(statement)


def test_migrating_grants_the_bridges_tables_to_a_vdi_bridge_role_that_exists_already(postgres_server_url):
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (postgres.BRIDGE_ROLE,)).fetchone():
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(postgres.BRIDGE_ROLE)))
        database = f"vdi_role_{uuid.uuid4().hex[:8]}"
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    url = urlunsplit(urlsplit(postgres_server_url)._replace(path=f"/{database}"))
    try:
        migrate(url)
        with psycopg.connect(url) as conn:
            def may(table: str, privilege: str) -> bool:
                return conn.execute("SELECT has_table_privilege(%s, %s, %s)",
                                    (postgres.BRIDGE_ROLE, table, privilege)).fetchone()[0]

            assert may("deliveries", "INSERT") and may("relay_heartbeats", "DELETE")
            assert not may("deliveries", "DELETE")
            assert not may("desktop_requests", "SELECT") and not may("request_events", "SELECT")
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(postgres.BRIDGE_ROLE)))
    finally:
        with psycopg.connect(postgres_server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))


def test_the_bridge_password_is_stable_and_is_not_the_superusers():
    assert postgres.bridge_password("s3cret") == postgres.bridge_password("s3cret")
    assert postgres.bridge_password("s3cret") not in ("s3cret", postgres.bridge_password("other"))

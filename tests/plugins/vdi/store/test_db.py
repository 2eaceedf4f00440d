"""``vdi.store.db``: the ``vdi_db`` connection (set as ``AIRFLOW_CONN_VDI_DB`` JSON) reaches libpq whole, and
``VDI_DATABASE_URL`` overrides it."""

from __future__ import annotations

import json
import uuid
from urllib.parse import parse_qsl, urlsplit

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict


def set_vdi_db(monkeypatch, url: str, **extra) -> None:
    """``AIRFLOW_CONN_VDI_DB`` for a postgresql:// URL, as a deployment writes it (JSON, extras as an object).
    The embedded test server listens on a unix socket: its directory is the connection's host."""
    parts = urlsplit(url)
    host = parts.hostname or dict(parse_qsl(parts.query))["host"]
    monkeypatch.setenv("AIRFLOW_CONN_VDI_DB", json.dumps({
        "conn_type": "postgres", "host": host, "port": parts.port, "login": parts.username,
        "password": parts.password, "schema": parts.path.lstrip("/"), "extra": extra}))


@pytest.fixture
def vdi_db_only(app_database_url, monkeypatch) -> str:
    """No override: the app database is reached through the ``vdi_db`` connection alone."""
    monkeypatch.delenv("VDI_DATABASE_URL")
    return app_database_url


def test_the_connections_extras_reach_libpq_and_it_connects_through_them(vdi_db_only, monkeypatch):
    from vdi.store import db

    name = f"vdi-test-{uuid.uuid4().hex[:8]}"
    set_vdi_db(monkeypatch, vdi_db_only, sslmode="disable", application_name=name, keepalives_idle=30,
               cursor="dictcursor")
    parameters = conninfo_to_dict(db.database_url())
    assert (parameters["sslmode"], parameters["application_name"], parameters["keepalives_idle"]) == (
        "disable", name, "30")
    assert "cursor" not in parameters  # the Postgres provider's own option, not libpq's
    with db.connect() as conn:
        assert conn.execute("SHOW application_name").fetchone()[0] == name
        assert conn.execute("SELECT to_regclass('desktop_requests')").fetchone()[0] == "desktop_requests"


def test_libpq_reads_the_connections_sslmode(vdi_db_only, monkeypatch):
    """(The embedded test server listens on a unix socket, where libpq uses no TLS whatever the sslmode: a value
    libpq refuses by name shows that the connection's sslmode is the one libpq acts on.)"""
    from vdi.store import db

    set_vdi_db(monkeypatch, vdi_db_only, sslmode="verify-everything")
    with pytest.raises(psycopg.OperationalError, match='invalid sslmode value: "verify-everything"'):
        db.connect()


def test_login_password_and_database_are_quoted_into_the_url(monkeypatch):
    from vdi.store import db

    monkeypatch.delenv("VDI_DATABASE_URL", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_VDI_DB", json.dumps({
        "conn_type": "postgres", "host": "db.studio.example", "port": 6432, "login": "vdi app",
        "password": "p@ss:w/rd?#", "schema": "vdi prod", "extra": {"sslmode": "verify-full"}}))
    assert conninfo_to_dict(db.database_url()) == {
        "host": "db.studio.example", "port": "6432", "user": "vdi app", "password": "p@ss:w/rd?#",
        "dbname": "vdi prod", "sslmode": "verify-full"}


def test_vdi_database_url_overrides_the_connection(app_database_url, monkeypatch):
    from vdi.store import db

    set_vdi_db(monkeypatch, "postgresql://nobody:wrong@db.invalid:5432/nothing")
    assert db.database_url() == app_database_url
    with db.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_without_override_or_connection_the_error_names_both(monkeypatch):
    from vdi.store import db

    monkeypatch.delenv("VDI_DATABASE_URL", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_VDI_DB", raising=False)
    with pytest.raises(db.DatabaseNotConfigured, match="VDI_DATABASE_URL or the Airflow connection vdi_db"):
        db.database_url()

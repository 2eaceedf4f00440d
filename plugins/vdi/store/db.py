"""Connections to the app database: the Airflow connection ``vdi_db`` taken whole, or the one override
``VDI_DATABASE_URL`` (``vdi.settings``)."""

from __future__ import annotations

from urllib.parse import quote, urlencode, urlunsplit

import psycopg

from vdi import settings

AIRFLOW_CONN_ID = "vdi_db"


class DatabaseNotConfigured(RuntimeError):
    """Neither the override nor the Airflow connection names the app database."""


def database_url(url: str | None = None) -> str:
    """The app database's libpq URL: the argument, else ``VDI_DATABASE_URL``, else the connection ``vdi_db``."""
    url = url or settings.load().database_url or _airflow_connection_url()
    if not url:
        raise DatabaseNotConfigured(
            f"set VDI_DATABASE_URL or the Airflow connection {AIRFLOW_CONN_ID} to the app database")
    return url


def connection_url(connection) -> str:
    """An Airflow ``postgres`` connection as a libpq URL, taken whole: host, port, login, password, schema (the
    database) and every extra as a libpq parameter (``sslmode``, ``sslrootcert``, ``application_name`` …), as
    the Postgres provider's hook passes them, except that provider's own options (``iam``, ``cursor`` …)."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    userinfo = quote(connection.login or "", safe="")
    if connection.password:
        userinfo += ":" + quote(connection.password, safe="")
    userinfo += "@" if userinfo else ""
    host = connection.host or ""
    host = f"[{host}]" if ":" in host else quote(host, safe="")  # an IPv6 address, or a name or socket directory
    port = f":{connection.port}" if connection.port else ""
    parameters = {key: _libpq_value(value) for key, value in (connection.extra_dejson or {}).items()
                  if key not in PostgresHook.ignored_extra_options}
    database = "/" + quote(connection.schema or "", safe="")
    return urlunsplit(("postgresql", userinfo + host + port, database, urlencode(parameters), ""))


def _libpq_value(value) -> str:
    """An extra as libpq's text (its booleans, such as ``keepalives``, are 1 and 0)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _airflow_connection_url() -> str | None:
    """The ``vdi_db`` connection's URL, where Airflow connections resolve (environment, secrets backend, DB)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return connection_url(BaseHook.get_connection(AIRFLOW_CONN_ID))
    except AirflowNotFoundException:  # the caller reports DatabaseNotConfigured
        return None


def connect(url: str | None = None, **kwargs) -> psycopg.Connection:
    """A new connection to the app database (short connect timeout: callers answer 503, not hang)."""
    kwargs.setdefault("connect_timeout", 5)
    return psycopg.connect(database_url(url), **kwargs)

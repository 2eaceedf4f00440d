"""Connections to the app database (``VDI_DATABASE_URL`` or the Airflow connection ``vdi_db``)."""

from __future__ import annotations

import os

import psycopg

DATABASE_URL_ENV = "VDI_DATABASE_URL"


class DatabaseNotConfigured(RuntimeError):
    """No app database URL was given."""


AIRFLOW_CONN_ID = "vdi_db"


def database_url(url: str | None = None) -> str:
    """The app database URL: the argument, else ``$VDI_DATABASE_URL``, else the Airflow connection ``vdi_db``."""
    url = url or os.environ.get(DATABASE_URL_ENV) or _airflow_connection_url()
    if not url:
        raise DatabaseNotConfigured(
            f"set {DATABASE_URL_ENV} or the Airflow connection {AIRFLOW_CONN_ID} to the app database")
    return url


def _airflow_connection_url() -> str | None:
    """The ``vdi_db`` connection as a libpq URL, when running where Airflow connections resolve."""
    try:
        from airflow.sdk import BaseHook
    except ImportError:
        return None
    try:
        connection = BaseHook.get_connection(AIRFLOW_CONN_ID)
    except Exception:  # not defined here: the caller reports DatabaseNotConfigured
        return None
    return connection.get_uri().split("?", 1)[0].replace("postgres://", "postgresql://", 1)


def connect(url: str | None = None, **kwargs) -> psycopg.Connection:
    """A new connection to the app database (short connect timeout: callers answer 503, not hang)."""
    kwargs.setdefault("connect_timeout", 5)
    return psycopg.connect(database_url(url), **kwargs)

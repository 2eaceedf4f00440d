"""Connections to the app database (``VDI_DATABASE_URL`` or the Airflow connection ``vdi_db``)."""

from __future__ import annotations

import os

import psycopg

DATABASE_URL_ENV = "VDI_DATABASE_URL"


class DatabaseNotConfigured(RuntimeError):
    """No app database URL was given."""


def database_url(url: str | None = None) -> str:
    """The app database URL: the argument, else ``$VDI_DATABASE_URL``."""
    url = url or os.environ.get(DATABASE_URL_ENV)
    if not url:
        raise DatabaseNotConfigured(f"set {DATABASE_URL_ENV} to the app database's postgresql:// URL")
    return url


def connect(url: str | None = None, **kwargs) -> psycopg.Connection:
    """A new connection to the app database (short connect timeout: callers answer 503, not hang)."""
    kwargs.setdefault("connect_timeout", 5)
    return psycopg.connect(database_url(url), **kwargs)

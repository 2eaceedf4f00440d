"""Fixtures shared by the whole suite: an isolated Airflow home and a real PostgreSQL."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Airflow reads its config at import time: isolate it before any test module imports airflow.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="vdi-test-airflow-")
os.environ.update({
    "AIRFLOW_HOME": _AIRFLOW_HOME,
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
})


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def postgres_server_url(tmp_path_factory) -> str:
    """A superuser URL of a real PostgreSQL: ``$VDI_TEST_DATABASE_URL`` or an embedded one (the local stack's)."""
    if url := os.environ.get("VDI_TEST_DATABASE_URL"):
        yield url
        return
    from sandbox.stack.postgres import embedded_server

    server = embedded_server(tmp_path_factory.mktemp("pgdata"))
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(scope="session")
def app_database_template(postgres_server_url) -> str:
    """A database holding the migrated app schema, cloned for each test."""
    import psycopg

    from vdi.store.migrate import migrate

    name = f"vdi_template_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    migrate(_with_database(postgres_server_url, name))
    yield name
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_database_url(postgres_server_url) -> str:
    """URL of a new, empty database, dropped after the test."""
    import psycopg

    name = f"vdi_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _with_database(postgres_server_url, name)
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def app_database_url(postgres_server_url, app_database_template, monkeypatch) -> str:
    """URL of a fresh database with the app schema applied; also exported as ``VDI_DATABASE_URL``."""
    import psycopg

    name = f"vdi_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{app_database_template}"')
    url = _with_database(postgres_server_url, name)
    monkeypatch.setenv("VDI_DATABASE_URL", url)
    yield url
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_until(condition, timeout_s: float = 10, message: str = "condition", interval_s: float = 0.05):
    """Poll ``condition`` until it returns something truthy (returned); AssertionError after ``timeout_s``."""
    from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

    retrying = Retrying(stop=stop_after_delay(timeout_s), wait=wait_fixed(interval_s),
                        retry=retry_if_result(lambda value: not value))
    try:
        return retrying(condition)
    except RetryError:
        raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {message}") from None


def at_once(app_database_url: str, action, times: int = 8) -> list:
    """``action(connection, n)`` from ``times`` threads released together, each on its own connection."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import psycopg

    connections = [psycopg.connect(app_database_url, autocommit=True) for _ in range(times)]
    start = threading.Barrier(times)

    def attempt(n):
        start.wait()
        return action(connections[n], n)

    try:
        with ThreadPoolExecutor(times) as pool:
            return list(pool.map(attempt, range(times)))
    finally:
        for connection in connections:
            connection.close()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint() -> str:
    """URL of a real moto server (EC2, S3, Secrets Manager, STS, IAM) on a free loopback port."""
    from moto.server import ThreadedMotoServer

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ.setdefault(key, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def stand_in_agent_vars(tmp_path) -> dict:
    """Ansible variables that keep a real Linux bootstrap inside tmp_path: no packages, services or firewall
    changes, and a stand-in for the vendor's agent installer (it cannot be downloaded here) that records the
    arguments it was given and creates the path the role checks for idempotency."""
    agent_dir = tmp_path / "opt-leostream"
    installer = tmp_path / "LeostreamAgentJava.jar"
    installer.write_bytes(b"installer bytes")
    return {
        "vdi_state_dir": str(tmp_path / "state"),
        "vdi_manage_packages": False, "vdi_manage_services": False, "vdi_manage_firewall": False,
        "leostream_agent_linux_url": installer.as_uri(),
        "leostream_agent_linux_install_command":
            f"/bin/sh -c 'mkdir -p {agent_dir} && printf \"%s \" \"$@\" > {agent_dir}/installer-args' installer",
        "leostream_agent_linux_creates": str(agent_dir),
        "leostream_agent_linux_conf_path": str(agent_dir / "leostreamagent.conf"),
    }

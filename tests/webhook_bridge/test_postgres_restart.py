"""The bridge and its relay across a PostgreSQL restart: a server of the test's own, run as the local stack runs
it (``sandbox.stack.postgres``), stopped as supervisord stops it (SIGINT, a fast shutdown) and started again on the
same port. Nothing is restarted on the bridge's side: its connections must come back by themselves."""

from __future__ import annotations

import signal
import subprocess

import psycopg
import pytest

from sandbox.stack import postgres
from tests.conftest import free_port, wait_until
from tests.webhook_bridge.conftest import AIRFLOW_PASSWORD, SECRET, jira_body, signed_headers
from webhook_bridge import create_app
from webhook_bridge.relay import create_relay

PASSWORD = "pw-restart-3b9d"


class RestartablePostgres:
    """``postgres`` in the foreground as a child process, on a fixed port, stoppable and startable again."""

    def __init__(self, pgdata, port: int):
        self.pgdata, self.port = pgdata, port
        self.process: subprocess.Popen | None = None
        self.superuser_url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/postgres"
        self.url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/vdi"

    def start(self) -> None:
        self.process = subprocess.Popen(postgres.server_command(self.pgdata, self.port), user=postgres.system_user(),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        postgres.wait_until_ready(self.superuser_url, 60, lambda: self.process.poll() is None)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)  # what supervisord sends it (fast shutdown: clients cut off)
        self.process.wait(60)


@pytest.fixture
def restartable_postgres(tmp_path):
    from vdi.store.migrate import migrate

    server = RestartablePostgres(tmp_path / "pgdata", free_port())
    postgres.init_cluster(server.pgdata, PASSWORD)
    server.start()
    with psycopg.connect(server.superuser_url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE vdi")
    migrate(server.url)
    yield server
    if server.process.poll() is None:
        server.stop()


def _post(client, delivery_id: str, number: int) -> int:
    body = jira_body(key=f"VDI-{number}")
    response = client.post("/webhooks/jira", data=body, headers=signed_headers(body, delivery_id))
    response.close()
    return response.status_code


def _statuses(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT delivery_id, status FROM deliveries").fetchall())


def test_the_bridge_and_relay_record_and_trigger_again_once_postgresql_is_back(restartable_postgres, fake_airflow):
    server = restartable_postgres
    config = {"DATABASE_URL": server.url, "WEBHOOK_SECRETS": [SECRET], "DB_TIMEOUT_S": 2,
              "AIRFLOW_API_URL": fake_airflow.url, "AIRFLOW_USERNAME": "vdi", "AIRFLOW_PASSWORD": AIRFLOW_PASSWORD,
              # Only a notification wakes the relay: its listening connection must come back too.
              "RELAY_THREADS": 2, "SWEEP_INTERVAL_S": 3600}
    app = create_app(config)
    bridge = app.extensions["webhook_bridge"]
    client = app.test_client()
    relay = create_relay(config)
    relay.start()
    try:
        wait_until(bridge.relay_alive, 30, "the relay's first beat")
        assert _post(client, "before", 1) == 202
        wait_until(lambda: "VDI-1__jira__before" in fake_airflow.runs, 30, "the delivery before the restart")

        server.stop()
        # Jira retries a 503: nothing is acknowledged that is not recorded.
        assert _post(client, "during", 2) == 503
        assert client.get("/readyz").status_code == 503
        server.start()

        wait_until(lambda: client.get("/readyz").status_code == 200, 60, "the bridge ready again (relay beating)")
        assert _post(client, "after", 3) == 202
        assert _post(client, "during", 2) == 202  # Jira's retry of the delivery refused while it was down
        wait_until(lambda: {"VDI-3__jira__after", "VDI-2__jira__during"} <= set(fake_airflow.runs), 60,
                   "the deliveries recorded after the restart triggered")
        assert _statuses(server.url) == {"before": "dispatched", "during": "dispatched", "after": "dispatched"}
        assert all(thread.is_alive() for thread in relay._threads), "a relay thread died with the database"
    finally:
        relay.stop()
        bridge.close()

"""Fixtures for the bridge: an app on a fresh migrated database (real PostgreSQL), and signed requests."""

from __future__ import annotations

import json
import time

import pytest

from webhook_bridge import create_app
from webhook_bridge.signature import sign

SECRET = "test-secret-4f1c"
AIRFLOW_PASSWORD = "pw-never-shown-7c1e"


def status_change(from_status: str, to_status: str) -> dict:
    """A changelog moving an issue between statuses, as Jira Cloud sends it with ``jira:issue_updated``."""
    return {"id": "10100", "items": [{"field": "status", "fieldtype": "jira", "fieldId": "status", "from": "1",
                                      "fromString": from_status, "to": "2", "toString": to_status}]}


def approval_body(key: str = "VDI-7", **extra) -> bytes:
    """A person's approval: ``jira:issue_updated`` moving the issue from Open to Approved."""
    return jira_body("jira:issue_updated", key, issue_event_type_name="issue_generic",
                     changelog=status_change("Open", "Approved"), **extra)


def jira_body(event: str = "jira:issue_created", key: str = "VDI-7", project: str = "VDI",
              issue_type: str = "Desktop", timestamp_ms: int | None = None, status: str = "Approved",
              **extra) -> bytes:
    """A delivery's body; by default an issue created in the trigger status, which the default routes send to
    vdi_provision."""
    payload = {
        "timestamp": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
        "webhookEvent": event,
        "issue_event_type_name": "issue_created",
        "user": {"accountId": "5b10a2844c20165700ede21g"},
        "issue": {"id": "10002", "key": key, "fields": {
            "project": {"key": project}, "issuetype": {"name": issue_type}, "status": {"name": status},
            "summary": "Desktop for an artist"}},
        **extra,
    }
    return json.dumps(payload).encode()


def signed_headers(body: bytes, delivery_id: str | None = "d-0001", secret: str = SECRET, **extra) -> dict:
    headers = {"Content-Type": "application/json; charset=UTF-8", "X-Hub-Signature": sign(secret, body)}
    if delivery_id is not None:
        headers["X-Atlassian-Webhook-Identifier"] = delivery_id
    headers.update(extra)
    return headers


def unreachable_url() -> str:
    """An http URL on loopback where nothing listens (connections are refused at once)."""
    from tests.conftest import free_port

    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def fake_airflow():
    """The Airflow endpoints the bridge and its relay call, over real HTTP (bench.airflow_stub)."""
    from bench.airflow_stub import AirflowStub

    fake = AirflowStub("vdi", AIRFLOW_PASSWORD)
    yield fake
    fake.gate.set()
    fake.close()


@pytest.fixture
def bridge_config(app_database_url) -> dict:
    """Settings for a test app (and relay): real database, no Airflow."""
    return {
        "DATABASE_URL": app_database_url,
        "WEBHOOK_SECRETS": [SECRET],
        "AIRFLOW_API_URL": None,
        "DB_TIMEOUT_S": 2,
    }


@pytest.fixture
def make_app():
    apps = []

    def make(config: dict):
        app = create_app(config)
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["webhook_bridge"].close()


@pytest.fixture
def make_relay(app_database_url):
    """Relays (``webhook_bridge.relay.create_relay``), stopped after the test (before its database goes); not
    started unless the test does."""
    from webhook_bridge.relay import create_relay

    relays = []

    def make(config: dict):
        relay = create_relay(config)
        relays.append(relay)
        return relay

    yield make
    for relay in relays:
        relay.stop()


@pytest.fixture
def app(make_app, bridge_config):
    return make_app(bridge_config)


@pytest.fixture
def client(app):
    return app.test_client()

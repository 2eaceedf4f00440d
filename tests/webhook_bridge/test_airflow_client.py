"""The REST client against a small fake Airflow over real HTTP: token caching and renewal, 401, 409, errors.

Only the client's protocol handling is tested here; triggering a real Airflow is in tests/e2e.
"""

import time

import pytest

from tests.webhook_bridge.conftest import AIRFLOW_PASSWORD as PASSWORD
from tests.webhook_bridge.conftest import unreachable_url
from tests.webhook_bridge.airflow_dags import AirflowWithDags
from webhook_bridge.airflow_client import (AirflowClient, AirflowUnavailable, DagNotFound, TriggerOutcome,
                                           TriggerRefused)


@pytest.fixture
def client(fake_airflow):
    return AirflowClient(fake_airflow.url, "vdi", PASSWORD, timeout_s=2)


def test_trigger_sends_run_id_null_logical_date_conf_and_note(client, fake_airflow):
    conf = {"delivery_id": "d1", "issue_key": "VDI-1", "event": "jira:issue_created"}
    assert client.trigger("vdi_provision", "VDI-1__jira__d1", conf, note="VDI-1 created in Approved in Jira") \
        is TriggerOutcome.CREATED
    assert fake_airflow.runs["VDI-1__jira__d1"] == {
        "path": "/api/v2/dags/vdi_provision/dagRuns", "dag_run_id": "VDI-1__jira__d1", "logical_date": None,
        "conf": conf, "note": "VDI-1 created in Approved in Jira"}
    assert client.trigger("vdi_provision", "VDI-1__jira__d2", conf, note="x" * 1500) is TriggerOutcome.CREATED
    assert len(fake_airflow.runs["VDI-1__jira__d2"]["note"]) == 1000  # Airflow's longest note
    assert client.trigger("vdi_provision", "VDI-1__jira__d3", conf) is TriggerOutcome.CREATED
    assert "note" not in fake_airflow.runs["VDI-1__jira__d3"]


def test_409_means_already_triggered(client):
    assert client.trigger("d", "r1", {}) is TriggerOutcome.CREATED
    assert client.trigger("d", "r1", {}) is TriggerOutcome.ALREADY_TRIGGERED


def test_the_token_is_cached(client, fake_airflow):
    for number in range(5):
        client.trigger("d", f"r{number}", {})
    assert fake_airflow.token_requests == 1


def test_the_token_is_renewed_before_it_expires(client, fake_airflow):
    fake_airflow.token_lifetime_s = 30  # inside the renewal margin: every use fetches a new one
    client.trigger("d", "r1", {})
    client.trigger("d", "r2", {})
    assert fake_airflow.token_requests == 2


def test_a_401_renews_the_token_once_and_repeats(client, fake_airflow):
    client.trigger("d", "r1", {})
    fake_airflow.valid_tokens.clear()  # e.g. Airflow restarted with another jwt_secret
    assert client.trigger("d", "r2", {}) is TriggerOutcome.CREATED
    assert fake_airflow.token_requests == 2


def test_refusals_and_unavailability(client, fake_airflow):
    fake_airflow.trigger_status = 400
    with pytest.raises(TriggerRefused, match="400"):
        client.trigger("d", "r", {})
    for status in (404, 500, 503, 403):
        fake_airflow.trigger_status = status
        with pytest.raises(AirflowUnavailable, match=str(status)):
            client.trigger("d", "r", {})


def test_wrong_password_is_unavailable_and_never_shows_the_password(fake_airflow):
    client = AirflowClient(fake_airflow.url, "vdi", "wrong-" + PASSWORD)
    with pytest.raises(AirflowUnavailable) as raised:
        client.trigger("d", "r", {})
    assert PASSWORD not in str(raised.value) and PASSWORD not in repr(client)


def test_airflow_down_is_unavailable_quickly():
    client = AirflowClient(unreachable_url(), "vdi", PASSWORD, timeout_s=1)
    started = time.monotonic()
    with pytest.raises(AirflowUnavailable):
        client.trigger("d", "r", {})
    assert time.monotonic() - started < 2
    assert client.healthy() is False


def test_health(client):
    assert client.healthy() is True


def test_a_404_naming_the_dag_is_dag_not_found_and_any_other_404_is_unavailable():
    airflow = AirflowWithDags("vdi", PASSWORD, missing_dags={"vdi_gone"})
    try:
        client = AirflowClient(airflow.url, "vdi", PASSWORD, timeout_s=2)
        with pytest.raises(DagNotFound, match="HTTP 404: Dag with dag_id: 'vdi_gone' not found"):
            client.trigger("vdi_gone", "r1", {})
        assert client.trigger("vdi_provision", "r1", {}) is TriggerOutcome.CREATED
        # A 404 that does not name the DAG (e.g. AIRFLOW_API_URL with a wrong path): retried, never dropped.
        airflow.trigger_status = 404
        with pytest.raises(AirflowUnavailable, match="404"):
            client.trigger("vdi_provision", "r2", {})
    finally:
        airflow.close()

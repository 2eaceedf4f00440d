"""The webhook endpoint against a real PostgreSQL (no relay: nothing reaches Airflow here)."""

import json
import logging
import time

import psycopg
import pytest

from tests.webhook_bridge.conftest import (SECRET, approval_body, jira_body, signed_headers, status_change,
                                          unreachable_url)


def rows(url):
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT delivery_id, id_from_body, event, issue_key, status, reason, dag_id, dag_run_id, payload"
            " FROM deliveries ORDER BY received_at").fetchall()


def test_new_delivery_is_recorded_pending_and_answered_202(client, app_database_url):
    body = jira_body()
    answer = client.post("/webhooks/jira", data=body, headers=signed_headers(body, "5a8b2f1e-0c1d"))
    assert answer.status_code == 202
    assert answer.json == {"status": "accepted", "delivery_id": "5a8b2f1e-0c1d", "dag_id": "vdi_provision"}
    [row] = rows(app_database_url)
    assert row[:8] == ("5a8b2f1e-0c1d", False, "jira:issue_created", "VDI-7", "pending", None, "vdi_provision",
                       "VDI-7__jira__5a8b2f1e-0c1d")
    assert row[8] == json.loads(body)


def test_an_approval_is_recorded_with_its_note_and_the_products_own_transition_is_ignored(client, app_database_url):
    approval = approval_body("VDI-12")
    assert client.post("/webhooks/jira", data=approval, headers=signed_headers(approval, "approve-1")).status_code == 202
    started = jira_body("jira:issue_updated", "VDI-12", status="In Progress", issue_event_type_name="issue_generic",
                        changelog=status_change("Approved", "In Progress"))  # same Jira account as the approval
    answer = client.post("/webhooks/jira", data=started, headers=signed_headers(started, "started-1"))
    reason = "no route for event jira:issue_updated (status moved to In Progress)"
    assert (answer.status_code, answer.json["status"], answer.json["reason"]) == (200, "ignored", reason)
    with psycopg.connect(app_database_url) as conn:
        recorded = conn.execute("SELECT delivery_id, status, reason, dag_run_id, note FROM deliveries"
                                " ORDER BY received_at").fetchall()
    assert recorded == [("approve-1", "pending", None, "VDI-12__jira__approve-1", "VDI-12 moved to Approved in Jira"),
                        ("started-1", "ignored", reason, None, None)]


def test_a_second_copy_is_a_duplicate(client, app_database_url):
    body = jira_body()
    assert client.post("/webhooks/jira", data=body, headers=signed_headers(body)).status_code == 202
    again = client.post("/webhooks/jira", data=body, headers=signed_headers(body, X_Atlassian_Webhook_Retry="1"))
    assert (again.status_code, again.json["status"]) == (200, "duplicate")
    assert len(rows(app_database_url)) == 1


def test_header_names_are_case_insensitive(client, app_database_url):
    body = jira_body()
    headers = {"content-type": "application/json", "x-hub-signature": signed_headers(body)["X-Hub-Signature"],
               "x-atlassian-webhook-identifier": "lower-1"}
    assert client.post("/webhooks/jira", data=body, headers=headers).status_code == 202
    assert rows(app_database_url)[0][0] == "lower-1"


def test_missing_identifier_uses_a_hash_of_the_body(client, app_database_url, caplog):
    body = jira_body()
    with caplog.at_level(logging.INFO, logger="webhook_bridge.delivery"):
        first = client.post("/webhooks/jira", data=body, headers=signed_headers(body, delivery_id=None))
        second = client.post("/webhooks/jira", data=body, headers=signed_headers(body, delivery_id=None))
        client.application.extensions["webhook_bridge"].journal.flush()
    assert (first.status_code, second.status_code) == (202, 200)
    [row] = rows(app_database_url)
    assert row[0].startswith("body-sha256-") and row[1] is True
    line = json.loads(caplog.records[0].getMessage())
    assert line["id_from_body"] is True and line["delivery_id"] == row[0]


@pytest.mark.parametrize("event, reason", [
    ("jira:worklog_updated", "no route for event jira:worklog_updated"),
    ("comment_created", "no route for event comment_created"),
])
def test_events_outside_the_routes_are_ignored_with_a_reason_and_recorded(client, app_database_url, event, reason):
    body = jira_body(event=event)
    answer = client.post("/webhooks/jira", data=body, headers=signed_headers(body))
    assert answer.status_code == 200 and answer.json["status"] == "ignored" and answer.json["reason"] == reason
    assert rows(app_database_url)[0][4:8] == ("ignored", reason, None, None)


def test_projects_and_issue_types_outside_the_configured_set_are_ignored(make_app, bridge_config, app_database_url):
    client = make_app({**bridge_config, "PROJECTS": ["VDI"], "ISSUE_TYPES": ["Desktop"]}).test_client()
    for delivery, body, reason in [
        ("p", jira_body(key="OPS-1", project="OPS"), "project OPS is not handled"),
        ("t", jira_body(issue_type="Bug"), "issue type Bug is not handled"),
    ]:
        answer = client.post("/webhooks/jira", data=body, headers=signed_headers(body, delivery))
        assert (answer.status_code, answer.json.get("reason")) == (200, reason)
    body = jira_body()
    assert client.post("/webhooks/jira", data=body, headers=signed_headers(body, "ok")).status_code == 202
    assert [row[4] for row in rows(app_database_url)] == ["ignored", "ignored", "pending"]


def test_stale_and_future_deliveries_are_ignored_and_recorded(client, app_database_url):
    now_ms = int(time.time() * 1000)
    stale = jira_body(timestamp_ms=now_ms - 86_400_000 - 60_000)
    answer = client.post("/webhooks/jira", data=stale, headers=signed_headers(stale, "stale"))
    assert answer.status_code == 200 and answer.json["reason"].startswith("stale")
    future = jira_body(timestamp_ms=now_ms + 3_600_000)
    answer = client.post("/webhooks/jira", data=future, headers=signed_headers(future, "future"))
    assert answer.status_code == 200 and answer.json["reason"] == "timestamp in the future"
    assert {row[0]: row[4] for row in rows(app_database_url)} == {"stale": "ignored", "future": "ignored"}


@pytest.mark.parametrize("headers_for, status", [
    (lambda body: {"Content-Type": "application/json"}, 401),
    (lambda body: signed_headers(body, secret="wrong"), 401),
    (lambda body: {**signed_headers(body), "X-Hub-Signature": signed_headers(body)["X-Hub-Signature"].replace("sha256", "sha1")}, 401),
    (lambda body: {**signed_headers(body), "Content-Type": "text/plain"}, 415),
    (lambda body: {k: v for k, v in signed_headers(body).items() if k != "Content-Type"}, 415),
])
def test_refused_requests_are_not_recorded(client, app_database_url, headers_for, status):
    body = jira_body()
    assert client.post("/webhooks/jira", data=body, headers=headers_for(body)).status_code == status
    assert rows(app_database_url) == []


def test_malformed_json_is_400_and_not_recorded(client, app_database_url):
    for body in (b"{not json", b"[]", b'{"a": "\\u0000"}'):
        assert client.post("/webhooks/jira", data=body, headers=signed_headers(body)).status_code == 400
    assert rows(app_database_url) == []


def test_body_over_the_limit_is_413(make_app, bridge_config, app_database_url):
    client = make_app({**bridge_config, "MAX_CONTENT_LENGTH": 2048}).test_client()
    body = jira_body(padding="x" * 4096)
    assert client.post("/webhooks/jira", data=body, headers=signed_headers(body)).status_code == 413
    small = jira_body()
    assert client.post("/webhooks/jira", data=small, headers=signed_headers(small)).status_code == 202


def test_default_body_limit_is_one_mebibyte(client):
    body = jira_body(padding="x" * (1024 * 1024))
    assert client.post("/webhooks/jira", data=body, headers=signed_headers(body)).status_code == 413


def test_no_secret_refuses_everything_and_readyz_fails(make_app, bridge_config, app_database_url):
    client = make_app({**bridge_config, "WEBHOOK_SECRETS": []}).test_client()
    for secret in ("", SECRET):
        body = jira_body()
        answer = client.post("/webhooks/jira", data=body, headers=signed_headers(body, secret=secret))
        assert answer.status_code == 503
    assert rows(app_database_url) == []
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["webhook_secret"] is False


def test_rotated_secrets_are_all_accepted(make_app, bridge_config):
    client = make_app({**bridge_config, "WEBHOOK_SECRETS": ["new-secret", SECRET]}).test_client()
    for number, secret in enumerate(("new-secret", SECRET)):
        body = jira_body()
        assert client.post("/webhooks/jira", data=body, headers=signed_headers(body, f"r{number}", secret)).status_code == 202


def test_database_down_is_503(make_app, bridge_config):
    from urllib.parse import urlsplit

    down = urlsplit(unreachable_url())
    client = make_app({**bridge_config, "DATABASE_URL": f"postgresql://vdi:pw@127.0.0.1:{down.port}/vdi",
                       "DB_TIMEOUT_S": 1}).test_client()
    body = jira_body()
    answer = client.post("/webhooks/jira", data=body, headers=signed_headers(body))
    assert answer.status_code == 503
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["database"] is False


def test_healthz_and_readyz(make_app, bridge_config):
    client = make_app(bridge_config).test_client()
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json["checks"] == {"webhook_secret": True, "database": True, "airflow": False, "relay": False}


def test_readyz_right_after_the_server_cut_the_bridges_connections_still_finds_the_database(
        make_app, bridge_config, app_database_url):
    client = make_app(bridge_config).test_client()
    assert client.get("/readyz").json["checks"]["database"] is True
    with psycopg.connect(app_database_url, autocommit=True) as conn:
        # What a PostgreSQL restart leaves the pool holding: connections the server has closed.
        cut = conn.execute("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                           " WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall()
    assert cut and all(ok for ok, in cut)
    assert client.get("/readyz").json["checks"]["database"] is True


def test_metrics_count_outcomes_latency_and_backlog(client):
    body = jira_body()
    client.post("/webhooks/jira", data=body, headers=signed_headers(body))
    client.post("/webhooks/jira", data=body, headers=signed_headers(body))
    client.post("/webhooks/jira", data=body, headers={"Content-Type": "application/json"})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'vdi_bridge_deliveries_total{outcome="accepted"} 1.0' in text
    assert 'vdi_bridge_deliveries_total{outcome="duplicate"} 1.0' in text
    assert 'vdi_bridge_deliveries_total{outcome="unauthorized"} 1.0' in text
    assert "vdi_bridge_ack_seconds_count 3.0" in text
    assert "vdi_bridge_pending_deliveries 1.0" in text
    assert "vdi_bridge_oldest_pending_age_seconds" in text


def test_one_log_line_per_delivery_without_secret_or_body(client, caplog):
    body = jira_body(summary_marker="SECRET-BODY-CONTENT")
    with caplog.at_level(logging.DEBUG):
        client.post("/webhooks/jira", data=body, headers=signed_headers(body, "log-1"))
        client.post("/webhooks/jira", data=body, headers={**signed_headers(body, "log-2"), "X-Hub-Signature": "sha256=00"})
        client.application.extensions["webhook_bridge"].journal.flush()
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "webhook_bridge.delivery"]
    assert [(line["delivery_id"], line["outcome"]) for line in lines] == [("log-1", "accepted"), ("log-2", "unauthorized")]
    assert lines[0]["issue"] == "VDI-7" and lines[0]["event"] == "jira:issue_created" and lines[0]["ms"] >= 0
    everything = caplog.text
    assert SECRET not in everything and "SECRET-BODY-CONTENT" not in everything

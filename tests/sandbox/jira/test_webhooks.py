"""Admin webhooks: registration, delivery over real HTTP to a receiver that verifies the HMAC, Jira Cloud's
retry policy with scaled delays, and the bridge registration step of ``make run``."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from dataclasses import dataclass, field

import pytest
import requests
from flask import Flask, request

from sandbox.jira.webhooks import RETRY_DELAY_RANGE_S, signature
from tests.conftest import wait_until
from tests.sandbox.jira.conftest import ALICE, API_TOKEN, API_USER, make_jira
from tests.sandbox.servers import admin_get, serving
from vdi.jira_webhooks import WEBHOOK_NAME, register_bridge_webhook

SECRET = "It's a Secret to Everybody"
DELAY_SCALE = 0.0002  # the jira fixture's: 5-15 min become 60-180 ms


@dataclass
class Received:
    at: float
    headers: dict
    raw: bytes
    signature_ok: bool

    @property
    def json(self):
        import json

        return json.loads(self.raw)


@dataclass
class Receiver:
    """A webhook endpoint that checks ``X-Hub-Signature`` against the raw body and answers a scripted status."""

    url: str = ""
    secret: str = SECRET
    statuses: list[int] = field(default_factory=list)
    stall_s: list[float] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Flask:
        app = Flask("receiver")

        @app.post("/webhooks/jira")
        def receive():
            raw = request.get_data()
            expected = "sha256=" + hmac.new(self.secret.encode(), raw, hashlib.sha256).hexdigest()
            given = request.headers.get("X-Hub-Signature", "")
            with self.lock:
                self.received.append(Received(time.monotonic(), dict(request.headers), raw,
                                              hmac.compare_digest(expected, given)))
                status = self.statuses.pop(0) if self.statuses else 200
                stall = self.stall_s.pop(0) if self.stall_s else 0
            if stall:
                time.sleep(stall)  # the receiver being slow is the behaviour under test (a timeout)
            return "", status

        return app

    def deliveries(self, event: str | None = None) -> list[Received]:
        with self.lock:
            return [r for r in self.received if event is None or r.json.get("webhookEvent") == event]


@pytest.fixture
def receiver():
    hook = Receiver()
    with serving(lambda url: hook.app()) as (url, _):
        hook.url = f"{url}/webhooks/jira"
        yield hook


def register(jira, url: str, events=("jira:issue_created", "jira:issue_updated"), jql="project = VDI",
             secret=SECRET, name="bridge") -> dict:
    response = jira.http.post(f"{jira.url}/rest/webhooks/1.0/webhook", json={
        "name": name, "url": url, "events": list(events), "filters": {"issue-related-events-section": jql},
        "excludeBody": False, "secret": secret})
    assert response.status_code == 201, response.text
    return response.json()


def deliveries(jira) -> list[dict]:
    return admin_get(jira.url, "/webhook-deliveries")


def test_signature_matches_atlassians_published_test_vector():
    assert signature("It's a Secret to Everybody", b"Hello World!") == \
        "sha256=a4771c39fbe90f317c7824e83ddef3caae9cb3d976c214ace1f2937e133263c9"


def test_registration_is_listed_without_its_secret(jira, receiver):
    created = register(jira, receiver.url)
    assert "secret" not in created
    assert created["filters"] == {"issue-related-events-section": "project = VDI"} and created["enabled"] is True
    listed = jira.http.get(f"{jira.url}/rest/webhooks/1.0/webhook").json()
    assert [w["name"] for w in listed] == ["bridge"] and SECRET not in str(listed)
    bad = jira.http.post(f"{jira.url}/rest/webhooks/1.0/webhook", json={
        "name": "x", "url": "ftp://nope", "events": ["jira:everything"], "filters": {
            "issue-related-events-section": "colour = blue"}})
    assert bad.status_code == 400 and set(bad.json()["errors"]) == {"url", "events", "filters"}
    assert jira.http.delete(created["self"]).status_code == 204
    assert jira.http.get(created["self"]).status_code == 404


def test_issue_created_is_delivered_signed_with_jiras_payload_shape(jira, receiver):
    register(jira, receiver.url)
    key = jira.create_request()
    [delivery] = wait_until(lambda: receiver.deliveries("jira:issue_created"), message="issue_created delivery")
    assert delivery.signature_ok
    headers = {k.lower(): v for k, v in delivery.headers.items()}
    assert headers["x-hub-signature"] == signature(SECRET, delivery.raw)
    assert headers["x-atlassian-webhook-flow"] == "Primary"
    assert headers["x-atlassian-webhook-identifier"]
    assert "x-atlassian-webhook-retry" not in headers
    assert headers["content-type"].startswith("application/json")
    body = delivery.json
    assert set(body) == {"timestamp", "webhookEvent", "issue_event_type_name", "user", "issue"}
    assert body["issue_event_type_name"] == "issue_created" and isinstance(body["timestamp"], int)
    assert body["issue"]["key"] == key and isinstance(body["issue"]["id"], str)
    assert body["issue"]["fields"]["customfield_10051"]["accountId"] == ALICE
    assert body["issue"]["fields"]["customfield_10050"]["value"] == "gpu"
    assert body["issue"]["fields"]["status"]["name"] == "Open"
    assert "emailAddress" not in body["user"] and body["user"]["accountId"]


def test_transition_edit_and_comment_are_issue_updated_told_apart_by_event_type(jira, receiver):
    register(jira, receiver.url, events=("jira:issue_updated", "comment_created"))
    key = jira.create_request()
    jira.transition(key, "11")
    jira.http.put(f"{jira.url}/rest/api/2/issue/{key}", json={"fields": {"summary": "renamed"}})
    jira.http.post(f"{jira.url}/rest/api/2/issue/{key}/comment", json={"body": "noted"})
    wait_until(lambda: len(receiver.deliveries()) == 4, message="four deliveries")
    updates = {r.json["issue_event_type_name"]: r.json for r in receiver.deliveries("jira:issue_updated")}
    assert set(updates) == {"issue_generic", "issue_updated", "issue_commented"}
    assert updates["issue_generic"]["changelog"]["items"] == [{
        "field": "status", "fieldtype": "jira", "fieldId": "status", "from": "10000", "fromString": "Open",
        "to": "10001", "toString": "Approved"}]
    assert updates["issue_generic"]["issue"]["fields"]["status"]["name"] == "Approved"
    assert updates["issue_updated"]["changelog"]["items"][0]["toString"] == "renamed"
    assert updates["issue_commented"]["comment"]["body"] == "noted" and "changelog" not in updates["issue_commented"]
    [created] = receiver.deliveries("comment_created")
    assert created.json["comment"]["body"] == "noted" and created.json["issue"]["key"] == key
    assert not receiver.deliveries("jira:issue_created")  # not subscribed


def test_the_jql_filter_decides_which_issues_are_delivered(jira, receiver):
    register(jira, receiver.url, jql="project = VDI AND issuetype = 'Desktop Removal'")
    jira.create_request()
    assert deliveries(jira) == []  # deliveries are decided when the change happens
    removal = jira.create_request(issuetype="Desktop Removal")
    [delivery] = wait_until(lambda: receiver.deliveries(), message="the removal's delivery")
    assert delivery.json["issue"]["key"] == removal


def test_retryable_failures_are_retried_with_the_same_identifier_and_scaled_delays(jira, receiver):
    receiver.statuses = [503, 429, 408, 200]
    register(jira, receiver.url)
    jira.create_request()
    attempts = wait_until(lambda: len(receiver.deliveries()) == 4 and receiver.deliveries(), message="four attempts")
    identifiers = {a.headers["X-Atlassian-Webhook-Identifier"] for a in attempts}
    assert len(identifiers) == 1
    assert [a.headers.get("X-Atlassian-Webhook-Retry") for a in attempts] == [None, "1", "2", "3"]
    assert all(a.signature_ok and a.raw == attempts[0].raw for a in attempts)
    low = RETRY_DELAY_RANGE_S[0] * DELAY_SCALE
    gaps = [later.at - earlier.at for earlier, later in zip(attempts, attempts[1:])]
    assert all(gap >= low * 0.9 for gap in gaps), gaps
    [record] = wait_until(lambda: [d for d in deliveries(jira) if d["state"] == "delivered"], message="delivered")
    assert [a["status"] for a in record["attempts"]] == [503, 429, 408, 200]
    assert record["identifier"] in identifiers


def test_other_client_errors_are_never_resent(jira, receiver):
    receiver.statuses = [400, 200]
    register(jira, receiver.url)
    jira.create_request()
    [record] = wait_until(lambda: [d for d in deliveries(jira) if d["state"] == "failed"], message="a failed delivery")
    assert [a["status"] for a in record["attempts"]] == [400]
    assert len(receiver.deliveries()) == 1


def test_gives_up_after_five_retries(jira, receiver):
    receiver.statuses = [500] * 10
    register(jira, receiver.url)
    jira.create_request()
    [record] = wait_until(lambda: [d for d in deliveries(jira) if d["state"] == "failed"], message="giving up")
    assert [a["retry"] for a in record["attempts"]] == [0, 1, 2, 3, 4, 5]
    assert len(receiver.deliveries()) == 6


def test_timeouts_and_refused_connections_are_retried(jira_spec, receiver):
    receiver.stall_s = [1.5]
    with make_jira(jira_spec, WEBHOOK_DELAY_SCALE=DELAY_SCALE, WEBHOOK_TIMEOUT_S=0.5) as (url, app):
        session = requests.Session()
        session.auth = (API_USER, API_TOKEN)
        closed_port_url = "http://127.0.0.1:9/webhooks/jira"
        for name, target in (("slow", receiver.url), ("closed", closed_port_url)):
            session.post(f"{url}/rest/webhooks/1.0/webhook", json={
                "name": name, "url": target, "events": ["jira:issue_created"], "secret": SECRET}).raise_for_status()
        session.post(f"{url}/rest/api/2/issue", json={"fields": {
            "project": {"key": "VDI"}, "issuetype": {"name": "Desktop Request"}, "summary": "s",
            "customfield_10050": {"value": "gpu"}, "customfield_10051": {"accountId": ALICE}}}).raise_for_status()
        def settled():
            records = admin_get(url, "/webhook-deliveries")
            return records if len(records) == 2 and all(d["state"] != "pending" for d in records) else None

        records = wait_until(settled, timeout_s=20, message="both deliveries settled")
        app.extensions["jira_dispatcher"].stop()
    by_url = {r["url"]: r for r in records}
    slow = by_url[receiver.url]
    assert slow["state"] == "delivered"
    assert [a["error"] for a in slow["attempts"]] == ["timeout", None]
    closed = by_url[closed_port_url]
    assert closed["state"] == "failed" and len(closed["attempts"]) == 6
    assert all(a["error"].startswith("connection failed") for a in closed["attempts"])


def test_after_thirty_minutes_of_failure_a_webhook_gets_one_attempt_per_delivery(jira_spec, receiver):
    receiver.statuses = [500] * 1000
    with make_jira(jira_spec, WEBHOOK_DELAY_SCALE=0.0005, WEBHOOK_TIMEOUT_S=2) as (url, app):
        session = requests.Session()
        session.auth = (API_USER, API_TOKEN)
        session.post(f"{url}/rest/webhooks/1.0/webhook", json={
            "name": "down", "url": receiver.url, "events": ["jira:issue_created"]}).raise_for_status()

        def file_and_settle():
            session.post(f"{url}/rest/api/2/issue", json={"fields": {
                "project": {"key": "VDI"}, "issuetype": {"name": "Desktop Request"}, "summary": "s",
                "customfield_10050": {"value": "gpu"}, "customfield_10051": {"accountId": ALICE}}})
            def latest_settled():
                latest = admin_get(url, "/webhook-deliveries")[-1]
                return latest if latest["state"] != "pending" else None

            return len(wait_until(latest_settled, timeout_s=20, message="the delivery to settle")["attempts"]) == 1

        assert wait_until(file_and_settle, timeout_s=30, message="a single-attempt delivery")
        first = admin_get(url, "/webhook-deliveries")[0]
        app.extensions["jira_dispatcher"].stop()
    assert len(first["attempts"]) == 6


def test_unsigned_webhook_has_no_signature_header(jira, receiver):
    register(jira, receiver.url, secret=None)
    jira.create_request()
    [delivery] = wait_until(lambda: receiver.deliveries(), message="a delivery")
    assert "X-Hub-Signature" not in delivery.headers


def test_bridge_registration_is_idempotent_and_needs_no_bridge(jira):
    bridge = "http://127.0.0.1:9"  # nothing listens there
    first = register_bridge_webhook(jira.url, API_USER, API_TOKEN, bridge, "secret-1")
    second = register_bridge_webhook(jira.url, API_USER, API_TOKEN, bridge + "/", "secret-2")
    listed = jira.http.get(f"{jira.url}/rest/webhooks/1.0/webhook").json()
    assert [w["name"] for w in listed] == [WEBHOOK_NAME]
    assert first["self"] == second["self"] and listed[0]["url"] == "http://127.0.0.1:9/webhooks/jira"
    assert listed[0]["events"] == ["jira:issue_created", "jira:issue_updated"]
    stored = jira.app.extensions["jira_site"].webhooks
    assert [w["secret"] for w in stored.values()] == ["secret-2"]


def test_bridge_registration_fails_with_a_one_line_cause(jira):
    from vdi.jira_webhooks import RegistrationError

    with pytest.raises(RegistrationError, match="HTTP 401"):
        register_bridge_webhook(jira.url, API_USER, "wrong-token", "http://127.0.0.1:9", "s")
    with pytest.raises(RegistrationError, match="empty"):
        register_bridge_webhook(jira.url, API_USER, API_TOKEN, "http://127.0.0.1:9", "")

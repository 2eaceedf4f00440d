"""Fault injection and the call log (``sandbox/faults.py``), driven over the ``/_sandbox`` admin API of both
sandboxes, as a test in another process would drive them."""

from __future__ import annotations

import json
import time

import pytest
import requests

from sandbox.faults import MASK, parse_fault, redact
from sandbox.jira.app import create_app as create_jira
from sandbox.leostream.app import create_app as create_leostream
from tests.conftest import wait_until
from tests.sandbox.servers import serving

TOKEN = "fault-test-api-token"
PASSWORD = "fault-test-broker-password"


@pytest.fixture
def jira():
    with serving(lambda url: create_jira({"JIRA_URL": url, "JIRA_TOKEN": TOKEN})) as (url, app):
        yield url
        app.extensions["jira_dispatcher"].stop()


@pytest.fixture
def leostream():
    with serving(lambda url: create_leostream({"LEOSTREAM_PASSWORD": PASSWORD, "POLL_SCALE": 0})) as (url, _):
        yield url


def add_fault(base_url: str, **spec) -> dict:
    response = requests.post(f"{base_url}/_sandbox/faults", json=spec, timeout=5)
    assert response.status_code == 201, response.text
    return response.json()


def myself(base_url: str, **kwargs) -> requests.Response:
    return requests.get(f"{base_url}/rest/api/2/myself", auth=("vdi-bot@studio.example", TOKEN), timeout=5,
                        **kwargs)


def test_429_with_retry_after_for_the_given_number_of_calls_then_normal(jira):
    add_fault(jira, method="GET", path="/rest/api/*/myself", status=429, retry_after=7, times=2)
    first, second, third = myself(jira), myself(jira), myself(jira)
    assert (first.status_code, first.headers["Retry-After"]) == (429, "7")
    assert first.json() == {"errorMessages": ["Rate limit exceeded."], "errors": {}}
    assert second.status_code == 429 and third.status_code == 200
    [fault] = requests.get(f"{jira}/_sandbox/faults", timeout=5).json()
    assert (fault["hits"], fault["times"]) == (2, 0)


def test_server_errors_use_each_vendors_error_shape(jira, leostream):
    add_fault(jira, path="/rest/api/2/myself", status=503, times=None)
    add_fault(leostream, path="/rest/v1/session/login", status=503)
    assert myself(jira).json() == {"errorMessages": ["Service unavailable"], "errors": {}}
    assert myself(jira).status_code == 503  # times: null keeps failing
    broker = requests.post(f"{leostream}/rest/v1/session/login", json={"user_login": "vdi-api",
                                                                      "password": PASSWORD}, timeout=5)
    assert (broker.status_code, broker.json()) == (503, {"error_status": "SERVICE_UNAVAILABLE",
                                                         "error_message": "Service unavailable"})
    assert requests.post(f"{leostream}/rest/v1/session/login", json={"user_login": "vdi-api",
                                                                    "password": PASSWORD}, timeout=5).ok


def test_method_and_path_decide_which_calls_a_fault_hits(jira):
    add_fault(jira, method="POST", path="/rest/api/2/myself", status=500)
    assert myself(jira).status_code == 200  # a GET is not hit
    add_fault(jira, path="/rest/api/3/*", status=502)
    assert myself(jira).status_code == 200
    assert requests.get(f"{jira}/rest/api/3/myself", auth=("vdi-bot@studio.example", TOKEN),
                        timeout=5).status_code == 502


def test_latency_delays_the_answer(jira):
    add_fault(jira, path="/rest/api/2/myself", latency_ms=400)
    started = time.monotonic()
    answer = myself(jira)
    assert answer.status_code == 200 and time.monotonic() - started >= 0.4
    started = time.monotonic()
    myself(jira)
    assert time.monotonic() - started < 0.4


def test_dropped_connection_reaches_the_client_as_a_connection_error(jira, leostream):
    add_fault(jira, path="/rest/api/2/myself", drop=True)
    with pytest.raises(requests.ConnectionError):
        myself(jira)
    assert myself(jira).status_code == 200
    add_fault(leostream, path="/rest/v1/*", drop=True)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{leostream}/rest/v1/centers", timeout=5)


def test_call_log_records_the_traffic_without_credentials(jira, leostream):
    myself(jira)
    requests.get(f"{jira}/rest/api/2/myself", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    requests.post(f"{leostream}/rest/v1/session/login", json={"user_login": "vdi-api", "password": PASSWORD},
                  timeout=5)
    jira_calls = requests.get(f"{jira}/_sandbox/calls", params={"path": "/rest/api/2/*"}, timeout=5).json()
    assert [(c["method"], c["path"], c["status"], c["auth"]) for c in jira_calls] == [
        ("GET", "/rest/api/2/myself", 200, "Basic"), ("GET", "/rest/api/2/myself", 200, "Bearer")]
    [login] = requests.get(f"{leostream}/_sandbox/calls", params={"method": "POST"}, timeout=5).json()
    assert login["body"] == {"user_login": "vdi-api", "password": MASK}
    everything = json.dumps(requests.get(f"{jira}/_sandbox/calls", timeout=5).json()) + json.dumps(
        requests.get(f"{leostream}/_sandbox/calls", timeout=5).json())
    assert TOKEN not in everything and PASSWORD not in everything
    since = jira_calls[-1]["seq"]
    myself(jira)
    assert len(requests.get(f"{jira}/_sandbox/calls", params={"since": since}, timeout=5).json()) == 1
    assert requests.delete(f"{jira}/_sandbox/calls", timeout=5).status_code == 204
    assert requests.get(f"{jira}/_sandbox/calls", timeout=5).json() == []


def test_the_admin_api_refuses_malformed_fault_rules(jira):
    for spec in ({"path": "no-slash", "status": 500}, {"path": "/x", "status": 200}, {"path": "/x"},
                 {"path": "/x", "status": 500, "times": 0}, {"path": "/x", "status": 500, "colour": "red"}, "x",
                 {"path": "/x", "status": 429, "retry_after": "window"}, {"path": "/x", "status": 500, "for_s": 0},
                 {"path": "/x", "status": 500, "for_s": "1m"}, {"path": "/x", "expire_session": "yes"}):
        answer = requests.post(f"{jira}/_sandbox/faults", json=spec, timeout=5)
        assert answer.status_code == 400 and answer.json()["error"], spec
    assert requests.delete(f"{jira}/_sandbox/faults", timeout=5).status_code == 204
    assert requests.get(f"{jira}/_sandbox/faults", timeout=5).json() == []


def test_a_rule_for_some_seconds_lapses_then_and_its_retry_after_window_counts_down(jira):
    add_fault(jira, method="GET", path="/rest/api/2/myself", status=429, retry_after="window", times=None,
              for_s=2)
    first = myself(jira)
    assert first.status_code == 429 and int(first.headers["Retry-After"]) in (1, 2)
    wait_until(lambda: myself(jira).status_code == 200, timeout_s=5, message="the rule to lapse")
    [fault] = requests.get(f"{jira}/_sandbox/faults", timeout=5).json()
    assert fault["hits"] >= 1 and fault["for_s"] == 2


def test_expire_session_ends_the_callers_broker_session_with_the_brokers_own_401(leostream):
    def login() -> dict:
        sid = requests.post(f"{leostream}/rest/v1/session/login", json={"user_login": "vdi-api",
                                                                        "password": PASSWORD}, timeout=5).json()["sid"]
        return {"Authorization": f"Bearer {sid}"}

    caller, bystander = login(), login()
    add_fault(leostream, method="GET", path="/rest/v1/pools", expire_session=True)
    refused = requests.get(f"{leostream}/rest/v1/pools", headers=caller, timeout=5)
    assert (refused.status_code, refused.json()) == (401, {"error_status": "UNAUTHORIZED",
                                                           "error_message": "Session expired, please log in again"})
    assert requests.get(f"{leostream}/rest/v1/centers", headers=caller, timeout=5).status_code == 401
    assert requests.get(f"{leostream}/rest/v1/pools", headers=bystander, timeout=5).status_code == 200
    assert requests.get(f"{leostream}/rest/v1/pools", headers=login(), timeout=5).status_code == 200


def test_the_jira_sandbox_has_no_sessions_to_expire(jira):
    answer = requests.post(f"{jira}/_sandbox/faults", json={"path": "/rest/*", "expire_session": True}, timeout=5)
    assert answer.status_code == 400 and "no API sessions" in answer.json()["error"]


def test_redaction_masks_secret_looking_fields_at_any_depth():
    assert redact({"password": "p", "center_definition": {"vc_password": "s", "name": "n"},
                   "items": [{"secret": "x", "token": None}]}) == {
        "password": MASK, "center_definition": {"vc_password": MASK, "name": "n"},
        "items": [{"secret": MASK, "token": None}]}
    assert parse_fault({"path": "/a", "drop": True}, 1).times == 1

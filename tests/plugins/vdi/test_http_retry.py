"""``vdi.http_retry``: the retry policy every outbound session shares, against the sandboxes' fault injection over
real HTTP. A server's ``Retry-After`` is honoured up to ``VDI_RETRY_AFTER_MAX_S``; a longer one ends the call at
once with the server's answer, so a task fails its try (and Airflow retries it later) instead of holding a worker
slot for an hour."""

from __future__ import annotations

import json
import time

import pytest
import requests

from tests.sandbox.jira.conftest import ALICE, API_TOKEN, API_USER
from tests.sandbox.leostream.conftest import API_PASSWORD as BROKER_PASSWORD
from tests.sandbox.leostream.conftest import API_USER as BROKER_USER
from vdi.jira import JiraTicket
from vdi.leostream import LeostreamClient, LeostreamError


def add_fault(base_url: str, **rule) -> None:
    requests.post(f"{base_url}/_sandbox/faults", json=rule, timeout=5).raise_for_status()


def fault_hits(base_url: str) -> list[int]:
    return [f["hits"] for f in requests.get(f"{base_url}/_sandbox/faults", timeout=5).json()]


@pytest.mark.timeout(60)  # fail rather than wait out the hour
def test_a_429_asking_for_an_hour_fails_the_call_within_seconds_without_a_resend(jira, ticket):
    key = jira.create_request(user=ALICE)
    add_fault(jira.url, method="GET", path=f"/rest/api/2/issue/{key}", status=429, retry_after=3600, times=None)
    started = time.monotonic()
    with pytest.raises(requests.HTTPError) as refused:
        ticket.status(key)
    assert time.monotonic() - started < 10
    assert refused.value.response.status_code == 429
    assert fault_hits(jira.url) == [1]


def test_a_short_retry_after_is_waited_for_and_the_call_resent(jira, ticket):
    key = jira.create_request(user=ALICE)
    add_fault(jira.url, method="GET", path=f"/rest/api/2/issue/{key}", status=429, retry_after=1)
    assert ticket.status(key) == "Open"
    assert fault_hits(jira.url) == [1]


def test_the_longest_retry_after_honoured_is_the_setting(jira, monkeypatch):
    monkeypatch.setenv("VDI_RETRY_AFTER_MAX_S", "0.5")
    monkeypatch.setenv("AIRFLOW_CONN_JIRA_DEFAULT", json.dumps({
        "conn_type": "jira", "host": jira.url, "login": API_USER, "password": API_TOKEN}))
    key = jira.create_request(user=ALICE)
    add_fault(jira.url, method="GET", path=f"/rest/api/2/issue/{key}", status=503, retry_after=1)
    with pytest.raises(requests.HTTPError):
        JiraTicket.from_connection().status(key)
    assert fault_hits(jira.url) == [1]


@pytest.mark.timeout(60)
def test_the_broker_client_gives_up_on_a_long_retry_after_as_well(leostream):
    add_fault(leostream.url, method="GET", path="/rest/v1/pools", status=429, retry_after=3600, times=None)
    started = time.monotonic()
    with LeostreamClient(leostream.url, BROKER_USER, BROKER_PASSWORD) as client:
        with pytest.raises(LeostreamError) as refused:
            client.pools()
    assert time.monotonic() - started < 10
    assert refused.value.status_code == 429
    assert fault_hits(leostream.url) == [1]


# --- retrying until a deadline (a caller no retry follows: the failure report) ---------------------------------
def _down(base_url: str, seconds: float) -> None:
    requests.post(f"{base_url}/_sandbox/outage", json={"seconds": seconds}, timeout=5).raise_for_status()


def _session(base_url: str, **policy) -> requests.Session:
    from vdi.http_retry import mount_retries, retry_policy

    return mount_retries(requests.Session(), base_url, retry_policy(**policy))


def test_retrying_for_seconds_outlasts_an_outage_that_a_count_of_attempts_gives_up_on(jira):
    _down(jira.url, 3)
    with pytest.raises(requests.ConnectionError):
        _session(jira.url, attempts=2, backoff_s=0.1).get(f"{jira.url}/rest/api/2/serverInfo", timeout=5)
    answer = _session(jira.url, attempts=2, backoff_s=0.1, retry_for_s=20).get(f"{jira.url}/rest/api/2/serverInfo",
                                                                                timeout=5)
    assert answer.ok


@pytest.mark.timeout(60)
def test_retrying_for_seconds_ends_at_the_deadline_and_no_wait_runs_past_it(jira):
    _down(jira.url, 600)
    session = _session(jira.url, retry_for_s=3)
    started = time.monotonic()
    with pytest.raises(requests.ConnectionError):
        session.get(f"{jira.url}/rest/api/2/serverInfo", timeout=5)
    assert 2.5 <= time.monotonic() - started < 5
    jira.app.extensions["sandbox_listener"].end_outage()


def test_a_429_is_waited_for_only_until_the_deadline(jira):
    add_fault(jira.url, method="GET", path="/rest/api/2/serverInfo", status=429, retry_after=30, times=None)
    started = time.monotonic()
    answer = _session(jira.url, retry_for_s=2).get(f"{jira.url}/rest/api/2/serverInfo", timeout=5)
    assert answer.status_code == 429 and time.monotonic() - started < 5

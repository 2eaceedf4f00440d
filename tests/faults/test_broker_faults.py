"""Broker faults (issue 14): the Leostream broker answering 503 ``SERVICE_UNAVAILABLE`` (its documented body) to
every call for a minute, and broker sessions expiring mid-run (the sandbox expires the caller's ``sid`` as its
lifetime ending would, and answers the broker's own 401). Each ends with ``assert_settled``.

Each scenario prints its duration (``-s`` shows it).
"""

from __future__ import annotations

import time

import pytest
import requests

from tests.conftest import wait_until
from tests.faults.conftest import FaultStack, assert_settled
from vdi.broker import pool_name_for
from vdi.leostream import LeostreamClient

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

UNAVAILABLE_S = 60
API = "/rest/v1"


def _elapsed(name: str, started: float) -> None:
    print(f"\n[faults] {name}: {time.monotonic() - started:.0f}s", flush=True)


def _sandbox(stack: FaultStack, path: str, **params) -> list[dict]:
    response = requests.get(f"{stack.env['LEOSTREAM_URL']}/_sandbox{path}", params=params, timeout=10)
    response.raise_for_status()
    return response.json()


def _in_progress(stack: FaultStack, keys: list[str]) -> bool:
    jira = stack.jira()
    return all(jira.get_issue(key, fields="status")["fields"]["status"]["name"] == "In Progress" for key in keys)


def _pools_per_ticket(stack: FaultStack, keys: list[str]) -> dict[str, int]:
    with LeostreamClient(stack.env["LEOSTREAM_URL"], stack.env["LEOSTREAM_USER"],
                         stack.env["LEOSTREAM_PASSWORD"]) as broker:
        names = [pool["name"] for pool in broker.pools()]
    return {key: names.count(pool_name_for(key)) for key in keys}


@pytest.mark.timeout(1200)  # the stack's start (first test), the fault, then settling
def test_a_minute_of_503_from_the_broker_is_sat_out_and_every_request_ends_ready(fault_stack):
    stack, started = fault_stack, time.monotonic()
    keys = stack.file_tickets(2)
    stack.approve(keys)
    # Mid-run: before any desktop is registered with the broker.
    wait_until(lambda: _in_progress(stack, keys), 300, "both tickets In Progress", interval_s=0.5)
    try:
        since = max([c["seq"] for c in _sandbox(stack, "/calls")] or [0])
        stack.add_fault("leostream", path=f"{API}/*", status=503, times=None, for_s=UNAVAILABLE_S)
        settled = assert_settled(stack, keys, deadline_s=600)
    finally:
        stack.clear_faults("leostream")
    assert settled == {key: "ready" for key in keys}
    calls = _sandbox(stack, "/calls", since=since)
    assert any(c["status"] == 503 and c["fault"] for c in calls), "the product did not meet the broker's 503s"
    assert _pools_per_ticket(stack, keys) == {key: 1 for key in keys}
    _elapsed("the broker answering 503 for a minute", started)


@pytest.mark.timeout(1200)  # the stack's start (first test), the fault, then settling
def test_broker_sessions_expiring_mid_run_are_renewed_and_every_request_ends_ready(fault_stack):
    stack, started = fault_stack, time.monotonic()
    keys = stack.file_tickets(2)
    since = max([c["seq"] for c in _sandbox(stack, "/calls")] or [0])
    try:
        # A session expires as a desktop's pool is created (a write, mid-registration), another as a wait in the
        # triggerer reads a pool. Once each: the call made again after the new login must not meet it.
        stack.add_fault("leostream", method="POST", path=f"{API}/pools", expire_session=True)
        stack.add_fault("leostream", method="GET", path=f"{API}/pools/*", expire_session=True)
        stack.approve(keys)
        settled = assert_settled(stack, keys, deadline_s=600)
        rules = _sandbox(stack, "/faults")
    finally:
        stack.clear_faults("leostream")
    assert settled == {key: "ready" for key in keys}
    assert [rule["hits"] for rule in rules] == [1, 1], rules
    calls = _sandbox(stack, "/calls", since=since)
    # (A logout with an expired sid is refused too, and ignored: not counted.)
    expired = [c for c in calls if c["status"] == 401 and not c["path"].endswith("/session/logout")]
    assert len(expired) == 2, expired
    # Each expired session was followed by a new login, and the pool refused was then created, once per ticket.
    logins = [c["seq"] for c in calls if c["path"] == f"{API}/session/login" and c["status"] == 200]
    assert all(any(seq > c["seq"] for seq in logins) for c in expired)
    assert [c["status"] for c in calls if c["method"] == "POST" and c["path"] == f"{API}/pools"].count(201) == len(keys)
    assert _pools_per_ticket(stack, keys) == {key: 1 for key in keys}
    _elapsed("broker sessions expiring mid-run", started)

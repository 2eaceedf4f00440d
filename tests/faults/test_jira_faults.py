"""Jira faults (issue 14): a minute of 429 with ``Retry-After`` on every write, and two minutes of Jira refusing
connections, its port closed (``POST /_sandbox/outage``: the sandbox stops listening and keeps its issues and
webhooks, as a real Jira keeps its database across a restart). Each ends with ``assert_settled``.

Each scenario prints its duration (``-s`` shows it).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from datetime import datetime, timezone
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import wait_until
from tests.faults.conftest import FaultStack, assert_settled

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

RATE_LIMITED_S = 60
OUTAGE_S = 120
WRITES = ("POST", "PUT")


def _elapsed(name: str, started: float) -> None:
    print(f"\n[faults] {name}: {time.monotonic() - started:.0f}s", flush=True)


def _jira_calls(stack: FaultStack, path: str) -> list[dict]:
    response = requests.get(f"{stack.env['JIRA_URL']}/_sandbox/calls", params={"path": path}, timeout=10)
    response.raise_for_status()
    return response.json()


def _in_progress(stack: FaultStack, keys: list[str]) -> bool:
    """Every ticket In Progress with its in-progress comment: the product is past its first Jira writes."""
    jira = stack.jira()
    return all(jira.get_issue(key, fields="status")["fields"]["status"]["name"] == "In Progress"
               and any("in_progress/" in c["body"] for c in jira.issue_get_comments(key)["comments"])
               for key in keys)


def _failure_comments(stack: FaultStack, key: str) -> list[str]:
    return [c["body"] for c in stack.jira().issue_get_comments(key)["comments"]
            if "vdi-studios ref: failed-" in c["body"]]


def _refuses(stack: FaultStack) -> bool:
    address = urlsplit(stack.env["JIRA_URL"])
    try:
        socket.create_connection((address.hostname, address.port), timeout=3).close()
        return False
    except ConnectionRefusedError:
        return True


@pytest.mark.timeout(1200)  # the stack's start (first test), the fault, then settling
def test_a_minute_of_429_on_every_jira_write_is_waited_out_and_every_request_ends_ready(fault_stack):
    stack, started = fault_stack, time.monotonic()
    keys = stack.file_tickets(2)
    stack.approve(keys)  # a write itself: the limit starts right after it
    try:
        for method in WRITES:
            stack.add_fault("jira", method=method, path="/rest/api/*/issue/*", status=429, retry_after="window",
                            for_s=RATE_LIMITED_S, times=None)
        settled = assert_settled(stack, keys, deadline_s=600)
    finally:
        stack.clear_faults("jira")
    assert settled == {key: "ready" for key in keys}
    for key in keys:
        writes = [c for c in _jira_calls(stack, f"/rest/api/2/issue/{key}/*") if c["method"] in WRITES]
        assert any(c["status"] == 429 for c in writes), f"no write of {key} met the rate limit"
        refused_at = max(c["at"] for c in writes if c["status"] == 429)
        # Every write refused was made again after the limit's window, and landed.
        assert any(c["status"] in (201, 204) and c["at"] > refused_at for c in writes)
    _elapsed("Jira answering 429 to every write for a minute", started)


@pytest.mark.timeout(1500)  # the stack's start (first test), the fault, then settling
def test_two_minutes_of_jira_refusing_connections_end_ready_or_failed_with_one_plain_comment(fault_stack):
    stack, started = fault_stack, time.monotonic()
    ready_key, failing_key = keys = stack.file_tickets(2)
    # One desktop's first boot fails while Jira is down: its failure report must wait for Jira to come back.
    requests.post(f"{stack.env['LEOSTREAM_URL']}/_sandbox/first-boot", timeout=10, json={
        "issue_key": failing_key, "outcome": "failed", "cause": "the render plugin did not install"},
    ).raise_for_status()
    stack.approve(keys)
    wait_until(lambda: _in_progress(stack, keys), 300, "both tickets In Progress", interval_s=1)
    down_at = datetime.now(timezone.utc)
    try:
        requests.post(f"{stack.env['JIRA_URL']}/_sandbox/outage", json={"seconds": OUTAGE_S},
                      timeout=10).raise_for_status()
        assert _refuses(stack), "Jira's port still accepts connections"
        wait_until(lambda: not _refuses(stack), OUTAGE_S + 60, "Jira to listen again", interval_s=1)
        back_at = datetime.now(timezone.utc)
    finally:
        if _refuses(stack):  # a failed scenario leaves Jira up for the next
            os.kill(stack.program_pid("jira-sandbox"), signal.SIGUSR1)
            wait_until(lambda: not _refuses(stack), 30, "Jira to listen again", interval_s=0.5)
    assert (back_at - down_at).total_seconds() >= OUTAGE_S - 1
    # The failure report waited Jira out (VDI_FAILURE_REPORT_WAIT_S): it lands once Jira is back, not never.
    wait_until(lambda: _failure_comments(stack, failing_key), 300, f"the failure comment on {failing_key}",
               interval_s=2)

    assert assert_settled(stack, keys, deadline_s=900) == {ready_key: "ready", failing_key: "failed"}
    with stack.database() as conn:
        failed_at = conn.execute(
            "SELECT e.at FROM request_events e JOIN desktop_requests r USING (request_id)"
            " WHERE r.issue_key = %s AND e.outcome = 'failed'", (failing_key,)).fetchone()["at"]
    assert down_at < failed_at < back_at, "the failure did not happen while Jira was down"
    [failure] = _failure_comments(stack, failing_key)
    # The report made while Jira was down carries the first boot's own words; a later one would not.
    assert "the render plugin did not install" in failure, "the failure report made during the outage was lost"
    _elapsed("Jira refusing connections for two minutes", started)

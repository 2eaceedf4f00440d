"""EC2 faults (issue 14): launches answered ``InsufficientInstanceCapacity`` and ``RequestLimitExceeded`` by the
fault hook in front of moto (sandbox/aws), which answers them as EC2 does (HTTP 500 and 503, EC2's error XML) and
honours ``ClientToken`` as EC2 does. Each ends with ``assert_settled``.
"""

from __future__ import annotations

import time

import requests

from tests.conftest import wait_until
from tests.faults.conftest import FaultStack, assert_settled

# The first launches are answered "no capacity" (HTTP 500: botocore retries it within the call, then the launch
# task fails and Airflow retries it), the next ones and the look-ups before them are throttled (botocore backs off).
# Few enough that one ticket taking them all still launches within the task's tries (5 botocore attempts each).
NO_CAPACITY_CALLS = 6
THROTTLED_CALLS = 4


def _elapsed(name: str, started: float) -> None:
    print(f"\n[faults] {name}: {time.monotonic() - started:.0f}s", flush=True)


def _aws(stack: FaultStack, method: str, path: str, **kwargs):
    response = requests.request(method, f"{stack.env['AWS_ENDPOINT_URL']}/_sandbox/{path}", timeout=10, **kwargs)
    response.raise_for_status()
    return response.json() if response.content else None


def _answered(stack: FaultStack, action: str, since: int) -> list[int]:
    return [call["status"] for call in _aws(stack, "GET", "calls", params={"action": action, "since": since})]


def _last_call(stack: FaultStack) -> int:
    calls = _aws(stack, "GET", "calls")
    return calls[-1]["seq"] if calls else 0


def test_launches_refused_for_capacity_and_throttled_still_end_ready_with_one_instance_each(fault_stack):
    started = time.monotonic()
    keys = fault_stack.file_tickets(3)
    since = _last_call(fault_stack)
    try:
        # First match wins: "no capacity" for the first launches, then throttling, of launches and of the
        # look-ups that precede every launch.
        _aws(fault_stack, "POST", "faults", json=[
            {"action": "RunInstances", "error": "InsufficientInstanceCapacity", "times": NO_CAPACITY_CALLS},
            {"action": "RunInstances", "error": "RequestLimitExceeded", "times": THROTTLED_CALLS},
            {"action": "DescribeInstances", "error": "RequestLimitExceeded", "times": THROTTLED_CALLS},
        ])
        fault_stack.approve(keys)
        wait_until(lambda: all(f["times"] == 0 for f in _aws(fault_stack, "GET", "faults")), 600,
                   "every EC2 fault to be spent", interval_s=2)
    finally:
        _aws(fault_stack, "DELETE", "faults")
    assert assert_settled(fault_stack, keys, deadline_s=600) == {key: "ready" for key in keys}
    launches = _answered(fault_stack, "RunInstances", since)
    assert launches.count(500) == NO_CAPACITY_CALLS and launches.count(503) == THROTTLED_CALLS
    assert launches.count(200) >= len(keys)
    _elapsed("no capacity, then throttled", started)


def test_capacity_that_never_returns_fails_the_request_with_a_plain_comment_and_no_instance(fault_stack):
    started = time.monotonic()
    [key] = fault_stack.file_tickets(1)
    since = _last_call(fault_stack)
    try:
        _aws(fault_stack, "POST", "faults",
             json={"action": "RunInstances", "error": "InsufficientInstanceCapacity", "times": None})
        fault_stack.approve([key])
        assert assert_settled(fault_stack, [key], deadline_s=900) == {key: "failed"}
    finally:
        _aws(fault_stack, "DELETE", "faults")
    assert set(_answered(fault_stack, "RunInstances", since)) == {500}
    _elapsed("capacity never returns", started)

"""The fault suite's control: with no fault, the same verdict holds and every request ends ready."""

from __future__ import annotations

from tests.faults.conftest import assert_settled


def test_without_a_fault_every_request_ends_ready_with_one_of_everything(fault_stack):
    keys = fault_stack.file_tickets(2)
    fault_stack.approve(keys)
    assert assert_settled(fault_stack, keys, deadline_s=300) == {key: "ready" for key in keys}

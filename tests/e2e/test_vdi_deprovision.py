"""vdi_deprovision end to end: a desktop provisioned through the stack, then a Desktop Removal ticket linked to its
request on the create screen → signed webhook → bridge → Airflow → broker, moto EC2 → both tickets."""

from __future__ import annotations

import airflow.sdk  # noqa: F401  (first: Airflow's start-up imports the vdi package, see airflow_local_settings)
import pytest

from sandbox.demo import file_and_approve
from tests.conftest import wait_until
from tests.e2e.test_vdi_provision import (  # noqa: F401 (fixtures)
    RUN_DEADLINE_S, broker, ec2, instance_states, jira, named, our_comments, request_row, status, wait_for_state)
from vdi.identity import policy_name_for

pytestmark = pytest.mark.e2e

ALICE = "712020:5b10ac8d82e05b22cc7d4e01"


def test_a_removal_ticket_linked_to_a_ready_desktop_takes_it_down(local_stack, jira, ec2, broker):
    request_key = file_and_approve(jira, "standard", "alice@studio.example")
    assert wait_for_state(local_stack, request_key, "ready", "failed", "rejected")["state"] == "ready"

    removal_key = jira.post("rest/api/2/issue", data={
        "fields": {"project": {"key": "VDI"}, "issuetype": {"name": "Desktop Removal"},
                   "summary": "Alice no longer needs her desktop", "customfield_10051": {"accountId": ALICE}},
        "update": {"issuelinks": [{"add": {"type": {"name": "Relates"}, "outwardIssue": {"key": request_key}}}]},
    })["key"]

    wait_until(lambda: status(jira, removal_key) in ("Removed", "Failed"), RUN_DEADLINE_S,
               f"{removal_key} to be Removed", interval_s=2)
    assert status(jira, removal_key) == "Removed", jira.issue_get_comments(removal_key)
    assert request_row(local_stack, request_key)["state"] == "removed"
    assert set(instance_states(ec2, request_key).values()) <= {"shutting-down", "terminated"}
    assert named(broker.pools(), f"vdi-{request_key}") == []
    [policy] = named(broker.policies(), policy_name_for("alice@studio.example"))
    assert all(a["pool_name"] != f"vdi-{request_key}" for a in broker.pool_assignments(policy["id"]))
    assert len(our_comments(jira, request_key, f"removed-{removal_key}/")) == 1
    assert len(our_comments(jira, removal_key, "removed/")) == 1

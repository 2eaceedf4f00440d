"""The bridge's default route for desktop removals: a *Desktop Removal* ticket created in, or moved back into,
*Removal Requested* starts vdi_deprovision; nothing else about it starts a run."""

from __future__ import annotations

import pytest

from webhook_bridge.events import Decision, Facts, Router
from webhook_bridge.settings import from_environment


def router(environ=None) -> Router:
    return Router.from_config(from_environment(environ or {})["ROUTES"])


def delivery(event: str, status: str, issue_type: str = "Desktop Removal", moved=None) -> Facts:
    payload = {"webhookEvent": event, "issue_event_type_name": "issue_generic",
               "issue": {"key": "VDI-7", "fields": {"project": {"key": "VDI"}, "issuetype": {"name": issue_type},
                                                    "status": {"name": status}}}}
    if moved:
        payload["changelog"] = {"id": "1", "items": [{"field": "status", "fieldtype": "jira", "fromString": moved[0],
                                                      "toString": moved[1]}]}
    return Facts.of(payload)


def test_a_removal_ticket_created_in_removal_requested_starts_vdi_deprovision():
    decision = router().decide(delivery("jira:issue_created", "Removal Requested"))
    assert decision == Decision("vdi_deprovision", None, "VDI-7 created in Removal Requested in Jira")


def test_retry_removal_moving_it_back_starts_vdi_deprovision_again():
    decision = router().decide(delivery("jira:issue_updated", "removal requested",
                                        moved=("Failed", "removal requested")))
    assert decision.dag_id == "vdi_deprovision" and decision.note == "VDI-7 moved to removal requested in Jira"


@pytest.mark.parametrize("facts", [
    delivery("jira:issue_updated", "Removed", moved=("Removal Requested", "Removed")),  # the DAG's own finish
    delivery("jira:issue_updated", "Failed", moved=("Removal Requested", "Failed")),
    delivery("jira:issue_updated", "Removal Requested"),  # a comment or an edit: no status change
])
def test_the_dags_own_transitions_and_edits_start_no_removal(facts):
    assert router().decide(facts).dag_id is None


def test_only_a_desktop_removal_ticket_routes_to_vdi_deprovision():
    other = delivery("jira:issue_created", "Removal Requested", issue_type="Desktop Request")
    assert router().decide(other).dag_id is None


def test_the_removal_route_follows_the_dag_sides_removal_status():
    custom = router({"VDI_JIRA_REMOVAL_STATUS": "To Remove"})
    assert custom.decide(delivery("jira:issue_created", "To Remove")).dag_id == "vdi_deprovision"
    assert custom.decide(delivery("jira:issue_created", "Removal Requested")).dag_id is None
    # An approval still goes to provisioning.
    assert custom.decide(delivery("jira:issue_updated", "Approved", "Desktop Request",
                                  moved=("Open", "Approved"))).dag_id == "vdi_provision"


def test_a_route_may_name_issue_types_and_a_bad_list_is_refused():
    routed = Router.from_config([{"moved_to": ["Go"], "issue_types": ["Bug"], "dag_id": "d"}])
    assert routed.decide(delivery("jira:issue_created", "Go", issue_type="bug")).dag_id == "d"
    with pytest.raises(ValueError, match="issue_types must be a list of names"):
        Router.from_config([{"moved_to": ["Go"], "issue_types": "Bug", "dag_id": "d"}])

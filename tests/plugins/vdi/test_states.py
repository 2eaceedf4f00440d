"""``vdi.states.refusal``: the one rule that says whether a run may work on a ticket."""

import pytest

from vdi.states import RequestState, Run, refusal

WEBHOOK, OTHER_WEBHOOK, MANUAL = Run("delivery-1"), Run("delivery-2"), Run("manual__1", manual=True)


def row(state: RequestState, owner: str | None = "delivery-1", step: str = "register_desktop") -> dict:
    return {"state": state.value, "owner_run_id": owner, "step": step}


def may(run: Run, request: dict | None, ticket_status: str = "Approved") -> bool:
    return refusal("VDI-7", request, run, ticket_status, "Approved") == ""


@pytest.mark.parametrize("run", [WEBHOOK, MANUAL])
def test_a_new_or_rejected_ticket_is_worked_on_only_in_the_trigger_status(run):
    for request in (None, row(RequestState.RECEIVED, None), row(RequestState.REJECTED, None)):
        assert may(run, request, "Approved") and may(run, request, "approved")
        assert not may(run, request, "Open")


@pytest.mark.parametrize("state", [RequestState.IN_PROGRESS, RequestState.FAILED])
def test_a_run_resumes_its_own_claim_whatever_the_tickets_status(state):
    for ticket_status in ("Approved", "In Progress", "Failed"):
        assert may(WEBHOOK, row(state), ticket_status)


def test_a_manual_run_resumes_a_failed_request_whatever_the_tickets_status():
    for ticket_status in ("Failed", "In Progress", "Approved"):
        assert may(MANUAL, row(RequestState.FAILED), ticket_status)


def test_another_webhook_run_never_resumes_a_failed_request_and_is_told_how_to():
    reason = refusal("VDI-7", row(RequestState.FAILED), OTHER_WEBHOOK, "Approved", "Approved")
    assert reason == ("VDI-7 failed at register_desktop: clear the failed task of run delivery-1"
                      " or trigger vdi_provision by hand with issue_key VDI-7")


@pytest.mark.parametrize("run", [OTHER_WEBHOOK, MANUAL])
def test_a_request_in_progress_under_another_run_is_left_alone(run):
    assert refusal("VDI-7", row(RequestState.IN_PROGRESS), run, "Approved", "Approved") == (
        "VDI-7 is already in_progress by run delivery-1")


@pytest.mark.parametrize("state", [RequestState.READY, RequestState.REMOVING, RequestState.REMOVED])
@pytest.mark.parametrize("run", [WEBHOOK, OTHER_WEBHOOK, MANUAL])
def test_a_ticket_with_its_desktop_or_losing_it_is_left_alone_by_every_run(state, run):
    assert refusal("VDI-7", row(state), run, "Approved", "Approved") == f"VDI-7 is already {state.value}"

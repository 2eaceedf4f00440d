"""``vdi.states.refusal``: the one rule that says whether a run may work on a ticket."""

import pytest

from vdi.states import RequestState, Run, refusal

WEBHOOK, OTHER_WEBHOOK, MANUAL = Run("delivery-1"), Run("delivery-2"), Run("manual__1", manual=True)


def row(state: RequestState, owner: str | None = "delivery-1", step: str = "register_desktop",
        detail: dict | None = None) -> dict:
    return {"state": state.value, "owner_run_id": owner, "step": step, "detail": detail or {}}


def may(run: Run, request: dict | None, ticket_status: str = "Approved") -> bool:
    return refusal("VDI-7", request, run, ticket_status, "Approved") == ""


def manual(force: bool = False, running: set[str] = frozenset()) -> Run:
    """A person's run; ``running`` are the runs Airflow still has queued or running."""
    return Run("manual__2", manual=True, force=force, is_running=lambda run_id: run_id in running)


@pytest.mark.parametrize("run", [WEBHOOK, MANUAL])
def test_a_new_or_rejected_ticket_is_worked_on_only_in_the_trigger_status(run):
    for request in (None, row(RequestState.RECEIVED, None), row(RequestState.REJECTED, None)):
        assert may(run, request, "Approved") and may(run, request, "approved")
        assert not may(run, request, "Open")


@pytest.mark.parametrize("state", [RequestState.IN_PROGRESS, RequestState.FAILED])
def test_a_run_resumes_its_own_claim_whatever_the_tickets_status(state):
    for ticket_status in ("Approved", "In Progress", "Failed"):
        assert may(WEBHOOK, row(state), ticket_status)


def test_a_manual_run_takes_over_a_failed_request_whatever_the_tickets_status():
    for ticket_status in ("Failed", "In Progress", "Approved"):
        assert may(MANUAL, row(RequestState.FAILED), ticket_status)


def test_a_failed_ticket_approved_again_in_jira_is_taken_over_by_its_webhook_run():
    failed = row(RequestState.FAILED, detail={"failure": {"step": "wait_bootstrap", "ticket_failed": True}})
    assert may(OTHER_WEBHOOK, failed, "Approved")


def test_the_failure_comments_own_delivery_finds_the_ticket_failed_and_is_told_how_to_retry():
    reason = refusal("VDI-7", row(RequestState.FAILED), OTHER_WEBHOOK, "Failed", "Approved")
    assert reason == ("VDI-7 failed at register_desktop: use Retry on the ticket, clear the failed task of run "
                      "delivery-1, or trigger vdi_provision by hand with issue_key VDI-7")


def test_a_failure_that_could_not_move_the_ticket_to_failed_is_not_restarted_by_a_webhook():
    # The ticket is still Approved (Jira refused the transition): its next delivery must not loop on it.
    stuck = row(RequestState.FAILED, step="jira_in_progress",
                detail={"failure": {"step": "jira_in_progress", "ticket_failed": False}})
    assert not may(OTHER_WEBHOOK, stuck, "Approved")
    assert may(MANUAL, stuck, "Approved")


@pytest.mark.parametrize("run", [OTHER_WEBHOOK, MANUAL, manual(force=True, running={"delivery-1"})])
def test_a_request_in_progress_under_a_running_run_is_left_alone(run):
    assert refusal("VDI-7", row(RequestState.IN_PROGRESS), run, "Approved", "Approved") == (
        "VDI-7 is already in_progress by run delivery-1")


def test_a_manual_run_with_force_takes_over_a_request_whose_run_is_no_longer_running():
    assert may(manual(force=True), row(RequestState.IN_PROGRESS), "In Progress")


def test_without_force_a_manual_run_is_told_that_the_stuck_request_can_be_taken_over():
    reason = refusal("VDI-7", row(RequestState.IN_PROGRESS), manual(), "In Progress", "Approved")
    assert reason == ("VDI-7 is in_progress by run delivery-1, which is no longer running: trigger again with"
                      " force to take it over")


def test_a_webhook_run_never_takes_over_a_request_in_progress_even_when_its_run_is_gone():
    gone = Run("delivery-2", is_running=lambda run_id: False)
    assert not may(gone, row(RequestState.IN_PROGRESS), "Approved")


def test_without_airflow_at_hand_every_other_run_counts_as_running():
    assert not may(Run("manual__3", manual=True, force=True), row(RequestState.IN_PROGRESS))


@pytest.mark.parametrize("state", [RequestState.READY, RequestState.REMOVING, RequestState.REMOVED])
@pytest.mark.parametrize("run", [WEBHOOK, OTHER_WEBHOOK, MANUAL, manual(force=True)])
def test_a_ticket_with_its_desktop_or_losing_it_is_left_alone_by_every_run(state, run):
    assert refusal("VDI-7", row(state), run, "Approved", "Approved") == f"VDI-7 is already {state.value}"

import psycopg
import pytest

from tests.conftest import at_once
from vdi.request import parse_issue
from vdi.states import RequestState, Run
from vdi.steps import Step
from vdi.store import requests as store

TRIGGER = "Approved"


@pytest.fixture
def conn(app_database_url):
    with psycopg.connect(app_database_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def desktop_request(jira_issue, field_names, field_config):
    return parse_issue(jira_issue, field_config, field_names)


def claim(conn, request, run_id: str, manual: bool = False):
    return store.claim(conn, request, Run(run_id, manual), TRIGGER)


def test_first_claim_creates_the_request_in_progress_with_an_event(conn, desktop_request):
    claimed = claim(conn, desktop_request, "run-1")
    assert claimed.proceed
    row = store.get_request(conn, "VDI-12")
    assert (row["state"], row["owner_run_id"], row["desktop_user"]) == ("in_progress", "run-1", "ada@studio.example")
    assert [(e["step"], e["outcome"]) for e in store.events(conn, desktop_request.request_id)] == [
        (Step.PERSIST, "claimed")]


def test_the_same_run_may_claim_again_after_a_clear(conn, desktop_request):
    claim(conn, desktop_request, "run-1")
    assert claim(conn, desktop_request, "run-1").proceed
    assert [e["outcome"] for e in store.events(conn, desktop_request.request_id)] == ["claimed", "claimed"]


def test_another_run_is_refused_while_the_request_is_in_progress(conn, desktop_request):
    claim(conn, desktop_request, "run-1")
    refused = claim(conn, desktop_request, "run-2")
    assert not refused.proceed
    assert refused.reason == "VDI-12 is already in_progress by run run-1"
    assert store.get_request(conn, "VDI-12")["owner_run_id"] == "run-1"


def test_a_ready_request_is_never_claimed_again(conn, desktop_request):
    claim(conn, desktop_request, "run-1")
    store.set_state(conn, desktop_request.request_id, RequestState.READY, Step.JIRA_READY, "ready")
    assert claim(conn, desktop_request, "run-1").reason == "VDI-12 is already ready"
    assert claim(conn, desktop_request, "manual-run", manual=True).reason == "VDI-12 is already ready"


def test_a_rejected_request_is_taken_over_by_a_new_delivery(conn, desktop_request):
    claim(conn, desktop_request, "run-1")
    store.set_state(conn, desktop_request.request_id, RequestState.REJECTED, Step.PERSIST, "rejected")
    assert claim(conn, desktop_request, "run-2").proceed
    assert store.get_request(conn, "VDI-12")["owner_run_id"] == "run-2"


def test_a_failed_request_is_resumed_by_its_own_run_or_a_manual_one_only(conn, desktop_request):
    claim(conn, desktop_request, "run-1")
    store.set_state(conn, desktop_request.request_id, RequestState.FAILED, Step.REGISTER_DESKTOP, "failed")
    refused = claim(conn, desktop_request, "delivery-run-2")
    assert not refused.proceed
    assert "failed at register_desktop: clear the failed task of run run-1" in refused.reason
    assert claim(conn, desktop_request, "run-1").proceed
    store.set_state(conn, desktop_request.request_id, RequestState.FAILED, Step.REGISTER_DESKTOP, "failed")
    assert claim(conn, desktop_request, "manual-run-3", manual=True).proceed
    assert store.get_request(conn, "VDI-12")["owner_run_id"] == "manual-run-3"


def test_a_new_ticket_outside_the_trigger_status_is_not_claimed_and_leaves_no_row(conn, desktop_request):
    opened = desktop_request.model_copy(update={"status": "Open"})
    refused = store.claim(conn, opened, Run("manual-run", manual=True), TRIGGER)
    assert refused.reason == "VDI-12 is 'Open', not 'Approved'"
    assert store.get_request(conn, "VDI-12") is None


def test_concurrent_claims_by_different_runs_let_exactly_one_proceed(app_database_url, desktop_request):
    for number in range(20, 32):  # a fresh ticket each round: the first inserts may collide on either key
        ticket = desktop_request.model_copy(update={"issue_key": f"VDI-{number}"})
        results = at_once(app_database_url, lambda connection, n: claim(connection, ticket, f"run-{n}").proceed)
        assert results.count(True) == 1


def test_concurrent_invalid_records_make_one_rejected_request(app_database_url, conn, desktop_request):
    for number in range(40, 52):
        issue_key = f"VDI-{number}"
        request_id = desktop_request.model_copy(update={"issue_key": issue_key}).request_id
        at_once(app_database_url, lambda connection, n: store.record_invalid(
            connection, request_id, issue_key, {"missing": ["bundle"], "attempt": n}))
        row = store.get_request(conn, issue_key)
        assert (row["state"], row["step"]) == ("rejected", "validate")
        assert len(store.events(conn, request_id)) == 8


def test_guardrail_counts_exclude_the_ticket_itself(conn, desktop_request):
    claim(conn, desktop_request, "run-1")
    other = desktop_request.model_copy(update={"issue_key": "VDI-13"})
    assert store.guardrail_counts(conn, desktop_request) == {"user_desktops": 0, "in_flight": 0}
    claim(conn, other, "run-2")
    assert store.guardrail_counts(conn, desktop_request) == {"user_desktops": 1, "in_flight": 1}

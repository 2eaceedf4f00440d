import time

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


def test_a_failed_request_is_resumed_by_its_own_run_or_a_manual_one_while_the_ticket_is_failed(conn,
                                                                                              desktop_request):
    claim(conn, desktop_request, "run-1")
    store.set_state(conn, desktop_request.request_id, RequestState.FAILED, Step.REGISTER_DESKTOP, "failed")
    in_failed = desktop_request.model_copy(update={"status": "Failed"})
    refused = store.claim(conn, in_failed, Run("delivery-run-2"), TRIGGER)
    assert not refused.proceed
    assert "failed at register_desktop: use Retry on the ticket, clear the failed task of run run-1" in (
        refused.reason)
    assert claim(conn, desktop_request, "run-1").proceed
    store.set_state(conn, desktop_request.request_id, RequestState.FAILED, Step.REGISTER_DESKTOP, "failed")
    assert store.claim(conn, in_failed, Run("manual-run-3", manual=True), TRIGGER).proceed
    assert store.get_request(conn, "VDI-12")["owner_run_id"] == "manual-run-3"


def test_a_failed_request_approved_again_is_taken_over_by_a_webhook_run(conn, desktop_request):
    claim(conn, desktop_request, "run-1")
    assert store.set_outcome(conn, desktop_request.request_id, Run("run-1"), RequestState.FAILED,
                             Step.WAIT_BOOTSTRAP, "failed", merge={"failure": {"ticket_failed": True}})
    assert claim(conn, desktop_request, "delivery-run-2").proceed  # the ticket is Approved again
    row = store.get_request(conn, "VDI-12")
    assert (row["state"], row["owner_run_id"]) == ("in_progress", "delivery-run-2")


# --- only the owner moves the request on --------------------------------------------------------------------
def test_hold_is_true_only_for_the_run_that_owns_the_request(conn, desktop_request):
    claim(conn, desktop_request, "run-1")
    assert store.hold(conn, desktop_request.request_id, Run("run-1"), Step.LAUNCH_INSTANCE)
    assert not store.hold(conn, desktop_request.request_id, Run("run-2"), Step.LAUNCH_INSTANCE)
    store.set_state(conn, desktop_request.request_id, RequestState.READY, Step.JIRA_READY, "ready")
    assert not store.hold(conn, desktop_request.request_id, Run("run-1"), Step.JIRA_READY)


def test_hold_by_the_owner_of_a_failed_request_resumes_it(conn, desktop_request):
    claim(conn, desktop_request, "run-1")
    store.set_state(conn, desktop_request.request_id, RequestState.FAILED, Step.REGISTER_DESKTOP, "failed")
    assert store.hold(conn, desktop_request.request_id, Run("run-1"), Step.REGISTER_DESKTOP)
    assert store.get_request(conn, "VDI-12")["state"] == "in_progress"
    assert store.hold(conn, desktop_request.request_id, Run("run-1"), Step.REGISTER_DESKTOP)
    outcomes = [e["outcome"] for e in store.events(conn, desktop_request.request_id)]
    assert outcomes == ["claimed", "failed", "resumed"]


def test_set_outcome_writes_only_for_the_owner(conn, desktop_request):
    claim(conn, desktop_request, "run-1")
    request_id = desktop_request.request_id
    assert not store.set_outcome(conn, request_id, Run("run-2"), RequestState.FAILED, Step.VALIDATE, "failed",
                                 merge={"failure": {"ticket_failed": False}})
    row = store.get_request(conn, "VDI-12")
    assert (row["state"], row["detail"]) == ("in_progress", {})
    assert store.set_outcome(conn, request_id, Run("run-1"), RequestState.READY, Step.JIRA_READY, "ready")
    assert store.set_outcome(conn, request_id, Run("run-1"), RequestState.READY, Step.JIRA_READY, "ready")
    assert not store.set_outcome(conn, request_id, Run("run-1"), RequestState.FAILED, Step.JIRA_READY, "failed")
    assert store.get_request(conn, "VDI-12")["state"] == "ready"
    assert [e["outcome"] for e in store.events(conn, request_id)] == ["claimed", "ready", "ready"]


# --- launch generation --------------------------------------------------------------------------------------
def test_a_new_request_starts_at_the_first_launch_generation(conn, desktop_request):
    claim(conn, desktop_request, "run-1")
    assert store.get_request(conn, "VDI-12")["launch_generation"] == 0


def test_the_generation_moves_on_once_per_gone_instance_however_often_it_is_asked(conn, desktop_request):
    claim(conn, desktop_request, "run-1")
    store.set_instance(conn, desktop_request.request_id, "i-first", {})
    for _ in range(3):
        assert store.next_generation(conn, desktop_request.request_id, "i-first", {"state": "terminated"}) == 1
    row = store.get_request(conn, "VDI-12")
    assert (row["launch_generation"], row["instance_id"]) == (1, None)
    store.set_instance(conn, desktop_request.request_id, "i-second", {})
    assert store.next_generation(conn, desktop_request.request_id, "i-second", {"state": "lost"}) == 2
    moves = [e["detail"] for e in store.events(conn, desktop_request.request_id) if e["outcome"] == "new_generation"]
    assert [(m["gone_instance_id"], m["generation"]) for m in moves] == [("i-first", 1), ("i-second", 2)]


def test_seconds_since_launch_count_from_the_first_record_of_the_instance(conn, desktop_request):
    claim(conn, desktop_request, "run-1")
    assert store.seconds_since_launch(conn, desktop_request.request_id, "i-1") is None
    store.set_instance(conn, desktop_request.request_id, "i-1", {})
    first = store.seconds_since_launch(conn, desktop_request.request_id, "i-1")
    store.set_instance(conn, desktop_request.request_id, "i-1", {"launched_now": False})
    assert 0 <= first <= store.seconds_since_launch(conn, desktop_request.request_id, "i-1") < 60


# --- bounded waits ------------------------------------------------------------------------------------------
def test_a_ticket_lock_held_elsewhere_fails_the_wait_after_its_timeout(app_database_url, conn):
    with psycopg.connect(app_database_url, autocommit=True) as holder, store.ticket_lock(holder, "VDI-12"):
        started = time.monotonic()
        with pytest.raises(psycopg.errors.LockNotAvailable):
            with store.ticket_lock(conn, "VDI-12", timeout_s=0.2):
                pass
        assert time.monotonic() - started < 5
    with store.ticket_lock(conn, "VDI-12", timeout_s=0.2):  # free again
        pass


def test_the_ticket_lock_wait_defaults_to_the_lock_timeout_setting(app_database_url, conn, monkeypatch):
    monkeypatch.setenv("VDI_LOCK_TIMEOUT_S", "0.2")
    with psycopg.connect(app_database_url, autocommit=True) as holder, store.ticket_lock(holder, "VDI-12"):
        with pytest.raises(psycopg.errors.LockNotAvailable):
            with store.ticket_lock(conn, "VDI-12"):
                pass


def test_bound_waits_stop_a_long_statement_and_a_claim_waiting_on_a_locked_row(app_database_url, conn,
                                                                               desktop_request):
    store.bound_waits(conn, 0.3)
    with pytest.raises(psycopg.errors.QueryCanceled):
        conn.execute("SELECT pg_sleep(5)")
    claim(conn, desktop_request, "run-1")
    with psycopg.connect(app_database_url) as holder:
        holder.execute("SELECT 1 FROM desktop_requests WHERE issue_key = 'VDI-12' FOR UPDATE")
        started = time.monotonic()
        with pytest.raises((psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled)):
            store.claim(conn, desktop_request, Run("run-2"), TRIGGER)
        assert time.monotonic() - started < 5


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

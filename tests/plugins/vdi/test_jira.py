"""``vdi.jira.JiraTicket`` built from the ``jira_default`` connection (``AIRFLOW_CONN_*`` in the environment, no
Airflow database) against the Jira sandbox: every request it sends and every answer it gets is checked against
Jira's OpenAPI document."""

from __future__ import annotations

import json
import time

import pytest
import requests

from tests.conftest import wait_until
from tests.sandbox.jira.conftest import ALICE, API_TOKEN, API_USER, DANA, jira, jira_spec  # noqa: F401
from tests.sandbox.jira.test_atlassian_client import TRANSITION_ID_AS_INT


def set_connection(monkeypatch, host: str, **fields) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_JIRA_DEFAULT", json.dumps({"conn_type": "jira", "host": host, **fields}))


def test_jira_ticket_steps_send_what_the_jira_document_allows(jira, monkeypatch):
    from vdi.jira import JiraTicket

    jira.spec.request_exemptions.append(TRANSITION_ID_AS_INT)
    set_connection(monkeypatch, jira.url, login=API_USER, password=API_TOKEN)
    ticket = JiraTicket.from_connection()
    jira.spec.watch(ticket.client.session)
    key = jira.create_request(user=ALICE)
    assert ticket.transition_to(key, "Approved") is True
    assert ticket.transition_to(key, "Approved") is False
    assert ticket.comment_once(key, "vdi-studios ref: ready/r1", "Your desktop is ready.") is True
    assert ticket.comment_once(key, "vdi-studios ref: ready/r1", "Your desktop is ready.") is False
    assert len(ticket.comments(key)) == 1
    assert ticket.field_names()["Desktop Bundle"] == "customfield_10050"
    jira.spec.assert_clean()


def test_user_property_reads_a_jira_users_property_and_none_when_it_is_unset(jira, monkeypatch):
    from vdi.jira import JiraTicket

    set_connection(monkeypatch, jira.url, login=API_USER, password=API_TOKEN)
    ticket = JiraTicket.from_connection()
    jira.spec.watch(ticket.client.session)
    assert ticket.user_property(DANA, "vdi-desktop-login") is None
    jira.http.put(f"{jira.url}/rest/api/2/user/properties/vdi-desktop-login", params={"accountId": DANA},
                  json={"login": "dana"}).raise_for_status()
    assert ticket.user_property(DANA, "vdi-desktop-login") == {"login": "dana"}
    assert ticket.user_property(ALICE, "vdi-desktop-login") is None
    jira.spec.assert_clean()


def test_a_connection_without_login_authenticates_with_its_password_as_a_bearer_token(jira, monkeypatch):
    from vdi.jira import JiraTicket

    set_connection(monkeypatch, jira.url, password=API_TOKEN)
    key = jira.create_request(user=ALICE)
    assert JiraTicket.from_connection().status(key) == "Open"
    requests.delete(f"{jira.url}/_sandbox/calls", timeout=5)
    JiraTicket.from_connection().status(key)
    [call] = requests.get(f"{jira.url}/_sandbox/calls", params={"path": "/rest/api/2/*"}, timeout=5).json()
    assert call["auth"].lower() == "bearer"


def test_a_refused_call_is_resent_with_the_shared_retry_policy(jira, monkeypatch):
    from vdi.jira import JiraTicket

    set_connection(monkeypatch, jira.url, login=API_USER, password=API_TOKEN)
    key = jira.create_request(user=ALICE)
    requests.post(f"{jira.url}/_sandbox/faults", timeout=5,
                  json={"method": "GET", "path": f"/rest/api/2/issue/{key}", "status": 503}).raise_for_status()
    assert JiraTicket.from_connection().status(key) == "Open"
    [fault] = requests.get(f"{jira.url}/_sandbox/faults", timeout=5).json()
    assert fault["hits"] == 1


def test_tls_verification_comes_from_the_connections_verify_extra(monkeypatch):
    from vdi.jira import JiraTicket

    set_connection(monkeypatch, "https://studio.atlassian.net", login=API_USER, password=API_TOKEN,
                   extra={"verify": False})
    assert JiraTicket.from_connection().client.session.verify is False
    set_connection(monkeypatch, "https://studio.atlassian.net", login=API_USER, password=API_TOKEN)
    assert JiraTicket.from_connection().client.session.verify is True


# --- Jira refusing writes, Jira down ----------------------------------------------------------------------------
def go_down(jira, seconds: float) -> None:
    """The sandbox's port refuses connections for ``seconds`` (``sandbox.server.Listener``)."""
    requests.post(f"{jira.url}/_sandbox/outage", json={"seconds": seconds}, timeout=5).raise_for_status()


def statuses(jira, method: str, path: str) -> list[int]:
    calls = requests.get(f"{jira.url}/_sandbox/calls", params={"method": method, "path": path}, timeout=5).json()
    return [call["status"] for call in calls]


def test_writes_refused_with_429_for_a_window_wait_out_its_retry_after_and_land_once(jira, monkeypatch):
    from vdi.jira import JiraTicket

    set_connection(monkeypatch, jira.url, login=API_USER, password=API_TOKEN)
    ticket = JiraTicket.from_connection()
    key = jira.create_request(user=ALICE)
    started = time.monotonic()  # before the rules: their 3 s window starts after it
    for method in ("POST", "PUT"):  # every write, as Jira's per-issue write limit does
        requests.post(f"{jira.url}/_sandbox/faults", timeout=5, json={
            "method": method, "path": "/rest/api/*/issue/*", "status": 429, "retry_after": "window",
            "for_s": 3, "times": None}).raise_for_status()
    assert ticket.comment_once(key, "vdi-studios ref: in_progress/r1", "On its way.") is True
    assert time.monotonic() - started >= 3  # the Retry-After was waited for, not hammered
    assert ticket.transition_to(key, "Approved") is True
    assert statuses(jira, "POST", f"/rest/api/2/issue/{key}/comment") == [429, 201]
    assert statuses(jira, "POST", f"/rest/api/2/issue/{key}/transitions") == [204]
    assert len(ticket.comments(key)) == 1


def test_a_jira_refusing_connections_for_seconds_is_sat_out_by_the_shared_retries(jira, monkeypatch):
    from vdi.jira import JiraTicket

    set_connection(monkeypatch, jira.url, login=API_USER, password=API_TOKEN)
    ticket = JiraTicket.from_connection()
    key = jira.create_request(user=ALICE)
    started = time.monotonic()  # before the outage: its 2 s start after it
    go_down(jira, 2)
    assert ticket.comment_once(key, "vdi-studios ref: in_progress/r1", "On its way.") is True
    assert time.monotonic() - started >= 2
    assert len(ticket.comments(key)) == 1


def _failed_in_progress_request(jira, app_database_url, ticket, key):
    """A request claimed by a webhook run and In Progress, as the failure callback finds it."""
    import psycopg

    from vdi import provision
    from vdi.catalog import load_catalog
    from vdi.request import DesktopRequest, JiraFieldConfig
    from vdi.states import Run

    run = Run("delivery-run-1")
    jira.transition(key, "11")
    conn = psycopg.connect(app_database_url, autocommit=True)
    request = DesktopRequest.model_validate(provision.validate(ticket, key, JiraFieldConfig.from_env({}), conn, run))
    assert provision.persist(conn, ticket, request, run, load_catalog(), "Approved")
    provision.mark_in_progress(conn, ticket, request, run, "linux")
    return conn, run


def test_a_failure_reported_while_jira_is_down_moves_the_ticket_and_comments_once_when_it_is_back(
        jira, app_database_url, monkeypatch):
    from vdi import provision
    from vdi.jira import JiraTicket
    from vdi.steps import Step
    from vdi.store import requests as store

    set_connection(monkeypatch, jira.url, login=API_USER, password=API_TOKEN)
    monkeypatch.setenv("VDI_FAILURE_REPORT_WAIT_S", "30")
    ticket = JiraTicket.from_connection()
    key = jira.create_request(bundle="standard", user=ALICE)
    conn, run = _failed_in_progress_request(jira, app_database_url, ticket, key)
    with conn:
        started = time.monotonic()  # before the outage: its 4 s start after it
        go_down(jira, 4)
        provision.record_failure(conn, JiraTicket.for_failure_report(), key, run, Step.REGISTER_DESKTOP,
                                 requests.ConnectionError("broker unreachable"), f"{run.run_id}-4")
        assert time.monotonic() - started >= 4
        row = store.get_request(conn, key)
    assert (row["state"], row["detail"]["failure"]["ticket_failed"]) == ("failed", True)
    assert ticket.status(key) == "Failed"
    failures = [c["body"] for c in ticket.comments(key) if "vdi-studios ref: failed-" in c["body"]]
    assert len(failures) == 1 and "could not be reached" in failures[0]


def test_a_failure_report_gives_jira_up_at_its_wait_and_leaves_no_half_written_comment(
        jira, app_database_url, monkeypatch):
    from vdi import provision
    from vdi.jira import JiraTicket
    from vdi.steps import Step

    set_connection(monkeypatch, jira.url, login=API_USER, password=API_TOKEN)
    monkeypatch.setenv("VDI_FAILURE_REPORT_WAIT_S", "2")
    ticket = JiraTicket.from_connection()
    key = jira.create_request(bundle="standard", user=ALICE)
    conn, run = _failed_in_progress_request(jira, app_database_url, ticket, key)
    with conn:
        go_down(jira, 600)
        started = time.monotonic()
        with pytest.raises(requests.ConnectionError):
            provision.record_failure(conn, JiraTicket.for_failure_report(), key, run, Step.REGISTER_DESKTOP,
                                     TimeoutError(), f"{run.run_id}-4")
        assert time.monotonic() - started < 10
    jira.app.extensions["sandbox_listener"].end_outage()
    wait_until(lambda: ticket.status(key) == "In Progress", 10, "Jira to answer again")
    assert not [c for c in ticket.comments(key) if "vdi-studios ref: failed-" in c["body"]]

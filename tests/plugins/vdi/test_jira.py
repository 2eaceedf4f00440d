"""``vdi.jira.JiraTicket`` built from the ``jira_default`` connection (``AIRFLOW_CONN_*`` in the environment, no
Airflow database) against the Jira sandbox: every request it sends and every answer it gets is checked against
Jira's OpenAPI document."""

from __future__ import annotations

import json

import requests

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

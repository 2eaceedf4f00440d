"""Our own Jira calls (``vdi.jira.JiraTicket``) against the sandbox: every request they send and every answer they get
is checked against Jira's OpenAPI document."""

from __future__ import annotations

from atlassian import Jira

from tests.sandbox.jira.conftest import ALICE, API_TOKEN, API_USER
from tests.sandbox.jira.test_atlassian_client import TRANSITION_ID_AS_INT


def test_jira_ticket_steps_send_what_the_jira_document_allows(jira):
    from vdi.jira import JiraTicket

    jira.spec.request_exemptions.append(TRANSITION_ID_AS_INT)
    client = Jira(url=jira.url, username=API_USER, password=API_TOKEN, api_version="2")
    jira.spec.watch(client._session)
    ticket = JiraTicket(client)
    key = jira.create_request(user=ALICE)
    assert ticket.transition_to(key, "Approved") is True
    assert ticket.transition_to(key, "Approved") is False
    assert ticket.comment_once(key, "vdi-studios ref: ready/r1", "Your desktop is ready.") is True
    assert ticket.comment_once(key, "vdi-studios ref: ready/r1", "Your desktop is ready.") is False
    assert len(ticket.comments(key)) == 1
    assert ticket.field_names()["Desktop Bundle"] == "customfield_10050"
    jira.spec.assert_clean()

import pytest
import requests
from atlassian import Jira

from tests.conftest import at_once
from tests.sandbox.jira.conftest import API_TOKEN, API_USER
from vdi.jira import JiraTicket, comment_marker
from vdi.provision import broker_address, comment_once, readable_cause
from vdi.request import request_id_for


@pytest.mark.parametrize("message, secret", [
    ("connect to postgresql://vdi:hunter2pass@db:5432/vdi failed", "hunter2pass"),
    ("401 for header Authorization: Bearer eyJhbGciOi.secret.token", "eyJhbGciOi.secret.token"),
    ("login refused: password=s3cr3t-value", "s3cr3t-value"),
    ('body {"sid": "abcdef123456"} rejected', "abcdef123456"),
])
def test_readable_cause_hides_secret_looking_values(message, secret):
    cause = readable_cause(RuntimeError(message))
    assert secret not in cause
    assert cause.startswith("RuntimeError: ")


def test_readable_cause_is_one_bounded_line():
    cause = readable_cause(ValueError("line one\nline two\n" + "x" * 1000))
    assert "\n" not in cause
    assert len(cause) <= len("ValueError: ") + 300


def test_readable_cause_names_the_error_type_when_the_message_is_empty():
    assert readable_cause(TimeoutError()) == "TimeoutError: TimeoutError"


def test_broker_address_drops_the_scheme():
    assert broker_address("https://leostream.studio.example/") == "leostream.studio.example"


def test_runs_commenting_on_one_ticket_at_once_post_the_comment_once(app_database_url, jira):
    key = jira.create_request()
    # A slow comment POST: without the ticket lock, every run would find no comment and post its own.
    requests.post(f"{jira.url}/_sandbox/faults", timeout=5, json={
        "method": "POST", "path": f"/rest/api/2/issue/{key}/comment", "latency_ms": 300, "times": None,
    }).raise_for_status()

    def comment(connection, n):
        ticket = JiraTicket(Jira(url=jira.url, username=API_USER, password=API_TOKEN, api_version="2"))
        return comment_once(connection, ticket, key, "rejected-abc", f"Not accepted (run {n}).")

    assert sorted(at_once(app_database_url, comment, times=6)) == [False] * 5 + [True]
    marker = comment_marker(str(request_id_for(key)), "rejected-abc")
    ticket = JiraTicket(Jira(url=jira.url, username=API_USER, password=API_TOKEN, api_version="2"))
    assert len([c for c in ticket.comments(key) if marker in c["body"]]) == 1

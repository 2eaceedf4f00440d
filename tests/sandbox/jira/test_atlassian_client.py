"""The real ``atlassian-python-api`` client, as Airflow's ``JiraHook`` builds it, runs its calls unchanged against
the sandbox; its traffic is checked against Jira's OpenAPI document."""

from __future__ import annotations

import json

import pytest
from atlassian import Jira

from tests.sandbox.jira.conftest import API_TOKEN, API_USER

# atlassian-python-api 5.0.5 sends the transition id it read back as an int ({"transition": {"id": 11}}): Jira
# accepts it, the document types it as a string. The sandbox accepts both, like Jira; only that request is exempt.
TRANSITION_ID_AS_INT = ("POST", r"/rest/api/2/issue/[^/]+/transitions", "transition id sent as an integer")


@pytest.fixture
def client(jira):
    """``atlassian.Jira`` exactly as ``JiraHook.get_conn()`` creates it (Server/DC style, API v2)."""
    jira.spec.request_exemptions.append(TRANSITION_ID_AS_INT)
    jira_client = Jira(url=jira.url, username=API_USER, password=API_TOKEN, verify_ssl=True, api_version="2",
                       api_root="rest/api")
    jira.spec.watch(jira_client._session)
    return jira_client


def test_comment_transition_search_and_properties_work_through_the_client(jira, client):
    key = jira.create_request()
    comment = client.issue_add_comment(key, "Your desktop is being prepared.")
    assert comment["body"] == "Your desktop is being prepared." and comment["author"]["emailAddress"] == API_USER

    client.set_issue_status(key, "Approved")
    client.set_issue_status(key, "In Progress")
    assert client.get_issue_status(key) == "In Progress"
    assert {t["to"] for t in client.get_issue_transitions(key)} == {"Ready", "Failed"}

    found = client.jql("project = VDI AND status = 'In Progress' AND updated >= -15m")
    assert [i["key"] for i in found["issues"]] == [key] and found["total"] == 1

    client.set_issue_property(key, "vdi.comment.provisioning", {"delivery": "abc"})
    assert client.get_issue_property(key, "vdi.comment.provisioning")["value"] == {"delivery": "abc"}
    assert [k["key"] for k in client.get_issue_property_keys(key)["keys"]] == ["vdi.comment.provisioning"]

    assert client.myself()["emailAddress"] == API_USER
    assert {"Desktop Bundle", "Desktop User"} <= {f["name"] for f in client.get_all_fields()}
    jira.spec.assert_clean()


def test_set_issue_status_to_an_unreachable_status_is_refused_by_jira(jira, client):
    key = jira.create_request()
    with pytest.raises(Exception) as refused:
        client.set_issue_status(key, "Ready")  # no transition leads there from Open: the id is None
    assert "transition" in str(refused.value).lower()
    assert client.get_issue_status(key) == "Open"


def test_cloud_client_searches_through_the_enhanced_jql_endpoint(jira):
    cloud = Jira(url=jira.url, username=API_USER, password=API_TOKEN, cloud=True)
    jira.spec.watch(cloud._session)
    keys = [jira.create_request(f"desktop {n}") for n in range(3)]
    found = cloud.jql(f"key in ({', '.join(keys)}) ORDER BY key ASC", fields=["status", "summary"])
    assert [i["key"] for i in found["issues"]] == keys and found["isLast"] is True
    assert jira.app.extensions["sandbox_traffic"].calls(path="/rest/api/3/search/jql")
    jira.spec.assert_clean()


def test_airflows_jira_hook_talks_to_the_sandbox_from_its_connection(jira, monkeypatch):
    from airflow.providers.atlassian.jira.hooks.jira import JiraHook

    monkeypatch.setenv("AIRFLOW_CONN_JIRA_DEFAULT", json.dumps({
        "conn_type": "jira", "host": jira.url, "login": API_USER, "password": API_TOKEN, "extra": {"verify": False}}))
    hook_client = JiraHook().get_conn()
    jira.spec.watch(hook_client._session)
    key = jira.create_request()
    hook_client.issue_add_comment(key, "from the hook")
    assert [c["body"] for c in hook_client.get(f"rest/api/2/issue/{key}/comment")["comments"]] == ["from the hook"]
    jira.spec.assert_clean()

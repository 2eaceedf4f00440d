"""The Jira sandbox's REST subset over real HTTP: shapes (checked against Jira's OpenAPI document by the
``jira`` fixture), workflow, auth and Jira's error bodies."""

from __future__ import annotations

import base64

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.sandbox.jira.conftest import API_TOKEN, API_USER, BOB

ADF = {"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": "Hi"}]}]}


def test_every_operation_of_the_subset_matches_the_openapi_document(jira):
    key = jira.create_request()
    base = f"{jira.url}/rest/api"
    for version in (2, 3):
        api = f"{base}/{version}"
        calls = [
            jira.http.get(f"{api}/serverInfo"), jira.http.get(f"{api}/myself"), jira.http.get(f"{api}/field"),
            jira.http.get(f"{api}/project/VDI"),
            jira.http.get(f"{api}/issue/createmeta", params={"projectKeys": "VDI",
                                                             "expand": "projects.issuetypes.fields"}),
            jira.http.get(f"{api}/issue/{key}"), jira.http.get(f"{api}/issue/{key}", params={
                "fields": "status,customfield_10050", "expand": "names,transitions,changelog"}),
            jira.http.put(f"{api}/issue/{key}", json={"fields": {"labels": [f"v{version}"]}}),
            jira.http.get(f"{api}/issue/{key}/transitions", params={"expand": "transitions.fields"}),
            jira.http.post(f"{api}/issue/{key}/comment", json={"body": ADF if version == 3 else "Hi"}),
            jira.http.get(f"{api}/issue/{key}/comment"),
            jira.http.put(f"{api}/issue/{key}/properties/vdi.step", json={"step": version}),
            jira.http.get(f"{api}/issue/{key}/properties/vdi.step"),
            jira.http.get(f"{api}/issue/{key}/properties"),
            jira.http.get(f"{api}/search", params={"jql": "project = VDI AND updated >= -5m"}),
            jira.http.post(f"{api}/search", json={"jql": f"key in ({key})", "fields": ["status"]}),
            jira.http.get(f"{api}/search/jql", params={"jql": "project = VDI", "fields": "*all"}),
            jira.http.post(f"{api}/search/jql", json={"jql": "project = VDI", "fields": ["summary"]}),
            jira.http.delete(f"{api}/issue/{key}/properties/vdi.step"),
        ]
        assert all(c.status_code < 300 for c in calls), [(c.request.url, c.status_code) for c in calls]
    jira.transition(key, "11")
    errors = [
        jira.http.get(f"{base}/2/issue/VDI-404"),
        jira.http.post(f"{base}/2/issue", json={"fields": {"project": {"key": "VDI"}}}),
        jira.http.post(f"{base}/2/issue/{key}/transitions", json={"transition": {"id": "31"}}),
        jira.http.get(f"{base}/2/search", params={"jql": "nonsense ~ 1"}),
        jira.http.get(f"{base}/3/search/jql", params={"jql": "order by created"}),
        jira.http.get(f"{base}/2/issue/{key}/properties/absent"),
    ]
    assert [e.status_code for e in errors] == [404, 400, 400, 400, 400, 404]
    assert len(jira.spec.checked) >= 2 * 19 + 7
    jira.spec.assert_clean()


def test_created_issue_carries_custom_fields_and_the_workflows_initial_status(jira):
    key = jira.create_request(bundle="large", user=BOB)
    issue = jira.http.get(f"{jira.url}/rest/api/2/issue/{key}").json()
    fields = issue["fields"]
    assert key == "VDI-1" and issue["id"].isdigit()
    assert fields["status"]["name"] == "Open" and fields["status"]["statusCategory"]["key"] == "new"
    assert fields["customfield_10050"]["value"] == "large" and fields["customfield_10050"]["id"] == "10102"
    assert fields["customfield_10051"]["accountId"] == BOB
    assert fields["reporter"]["emailAddress"] == API_USER
    assert fields["issuetype"]["name"] == "Desktop Request" and fields["project"]["key"] == "VDI"
    removal = jira.create_request(issuetype="Desktop Removal")
    assert jira.http.get(f"{jira.url}/rest/api/2/issue/{removal}?fields=status").json()["fields"] == {
        "status": jira.http.get(f"{jira.url}/rest/api/2/issue/{removal}").json()["fields"]["status"]}
    assert jira.http.get(f"{jira.url}/rest/api/2/issue/{removal}").json()["fields"]["status"]["name"] == \
        "Removal Requested"


def test_create_refuses_bad_fields_with_jiras_error_collection(jira):
    response = jira.http.post(f"{jira.url}/rest/api/2/issue", json={"fields": {
        "project": {"key": "VDI"}, "issuetype": {"name": "Desktop Request"},
        "customfield_10050": {"value": "huge"}, "customfield_99999": "x"}})
    assert response.status_code == 400
    assert response.json() == {"errorMessages": [], "errors": {
        "customfield_10050": "Option value 'huge' is not valid",
        "customfield_99999": "Field 'customfield_99999' cannot be set. It is not on the appropriate screen, "
                             "or unknown.",
        "summary": "You must specify a summary of the issue.",
        "customfield_10051": "Desktop User is required."}}
    wrong_project = jira.http.post(f"{jira.url}/rest/api/2/issue", json={"fields": {
        "project": {"key": "NOPE"}, "issuetype": {"name": "Bug"}, "summary": "x"}})
    assert wrong_project.json()["errors"] == {"project": "Specify a valid project ID or key",
                                              "issuetype": "The issue type selected is invalid."}


def test_rich_text_is_a_string_in_v2_and_adf_in_v3(jira):
    key = jira.create_request()
    refused = jira.http.post(f"{jira.url}/rest/api/3/issue/{key}/comment", json={"body": "plain"})
    assert refused.status_code == 400 and "comment" in refused.json()["errors"]
    written = jira.http.post(f"{jira.url}/rest/api/3/issue/{key}/comment", json={"body": ADF})
    assert written.status_code == 201 and written.json()["body"] == ADF
    jira.http.post(f"{jira.url}/rest/api/2/issue/{key}/comment", json={"body": "line one\nline two"})
    v2 = jira.http.get(f"{jira.url}/rest/api/2/issue/{key}/comment").json()
    v3 = jira.http.get(f"{jira.url}/rest/api/3/issue/{key}/comment").json()
    assert [c["body"] for c in v2["comments"]] == ["Hi", "line one\nline two"]
    assert v3["comments"][1]["body"]["type"] == "doc"
    assert v3["comments"][1]["body"]["content"][0]["content"][0] == {"type": "text", "text": "line one"}
    assert v2["total"] == 2
    description = jira.http.put(f"{jira.url}/rest/api/3/issue/{key}", json={"fields": {"description": "plain"}})
    assert description.status_code == 400 and "description" in description.json()["errors"]


def test_transitions_follow_the_workflow_and_offer_only_what_the_status_allows(jira):
    key = jira.create_request()

    def offered():
        listed = jira.http.get(f"{jira.url}/rest/api/2/issue/{key}/transitions").json()["transitions"]
        return {t["to"]["name"]: t["id"] for t in listed}

    assert offered() == {"Approved": "11"}
    jira.transition(key, "11")
    assert offered() == {"In Progress": "21", "Failed": "41"}
    early = jira.http.post(f"{jira.url}/rest/api/2/issue/{key}/transitions", json={"transition": {"id": "31"}})
    assert early.status_code == 400 and "not valid for the current state" in early.json()["errorMessages"][0]
    unknown = jira.http.post(f"{jira.url}/rest/api/2/issue/{key}/transitions", json={"transition": {"id": "99"}})
    assert unknown.json()["errorMessages"] == ["Transition id '99' is not valid for this issue."]
    jira.transition(key, "21")
    jira.transition(key, "31")
    issue = jira.http.get(f"{jira.url}/rest/api/2/issue/{key}", params={"expand": "changelog"}).json()
    assert issue["fields"]["status"]["name"] == "Ready"
    assert offered() == {}
    statuses = [(i["fromString"], i["toString"]) for h in reversed(issue["changelog"]["histories"])
                for i in h["items"] if i["field"] == "status"]
    assert statuses == [("Open", "Approved"), ("Approved", "In Progress"), ("In Progress", "Ready")]


def test_edit_updates_fields_and_records_the_change(jira):
    key = jira.create_request(bundle="standard")
    response = jira.http.put(f"{jira.url}/rest/api/2/issue/{key}", json={
        "fields": {"customfield_10050": {"id": "10101"}}, "update": {"labels": [{"add": "urgent"}]}})
    assert response.status_code == 204
    issue = jira.http.get(f"{jira.url}/rest/api/2/issue/{key}", params={"expand": "changelog"}).json()
    assert issue["fields"]["customfield_10050"]["value"] == "gpu" and issue["fields"]["labels"] == ["urgent"]
    items = {i["fieldId"]: i for i in issue["changelog"]["histories"][0]["items"]}
    assert items["customfield_10050"] == {"field": "Desktop Bundle", "fieldtype": "custom",
                                          "fieldId": "customfield_10050", "from": "10100",
                                          "fromString": "standard", "to": "10101", "toString": "gpu"}
    both = jira.http.put(f"{jira.url}/rest/api/2/issue/{key}", json={"fields": {"labels": []},
                                                                     "update": {"labels": [{"add": "x"}]}})
    assert both.status_code == 400 and "labels" in both.json()["errors"]


def test_issue_properties_are_created_then_updated_and_bounded(jira):
    key = jira.create_request()
    url = f"{jira.url}/rest/api/2/issue/{key}/properties/vdi.comment.ready"
    assert jira.http.put(url, json={"delivery": "d-1"}).status_code == 201
    assert jira.http.put(url, json={"delivery": "d-2"}).status_code == 200
    assert jira.http.get(url).json() == {"key": "vdi.comment.ready", "value": {"delivery": "d-2"}}
    keys = jira.http.get(f"{jira.url}/rest/api/2/issue/{key}/properties").json()["keys"]
    assert [k["key"] for k in keys] == ["vdi.comment.ready"]
    too_big = jira.http.put(url, json={"blob": "x" * 33000})
    assert too_big.status_code == 400 and too_big.json()["errorMessages"]
    with_props = jira.http.get(f"{jira.url}/rest/api/2/issue/{key}", params={"properties": "*all"}).json()
    assert with_props["properties"] == {"vdi.comment.ready": {"delivery": "d-2"}}
    assert jira.http.delete(url).status_code == 204
    assert jira.http.get(url).status_code == 404


def test_search_applies_the_jql_subset_on_both_endpoints(jira):
    first, second, third = (jira.create_request(f"desktop {n}") for n in range(3))
    jira.transition(second, "11")
    removal = jira.create_request(issuetype="Desktop Removal")
    v2 = jira.http.get(f"{jira.url}/rest/api/2/search", params={
        "jql": "project = VDI AND status = Open AND issuetype = 'Desktop Request' AND updated >= -5m "
               "ORDER BY key ASC", "fields": "status"}).json()
    assert [i["key"] for i in v2["issues"]] == [first, third] and v2["total"] == 2
    assert set(v2["issues"][0]["fields"]) == {"status"}
    keyed = jira.http.post(f"{jira.url}/rest/api/3/search/jql",
                           json={"jql": f"key in ({removal}, {second})", "fields": ["status"]}).json()
    assert sorted(i["key"] for i in keyed["issues"]) == sorted([removal, second]) and keyed["isLast"] is True
    bare = jira.http.get(f"{jira.url}/rest/api/3/search/jql", params={"jql": "project = VDI"}).json()
    assert all(set(i) == {"expand", "id", "self", "key"} for i in bare["issues"])
    stale = jira.http.get(f"{jira.url}/rest/api/2/search", params={"jql": "updated < -1h"}).json()
    assert stale["total"] == 0


def test_enhanced_search_pages_with_next_page_tokens(jira):
    created = [jira.create_request(f"desktop {n}") for n in range(5)]
    seen, token = [], None
    while True:
        params = {"jql": "project = VDI ORDER BY key ASC", "maxResults": 2}
        if token:
            params["nextPageToken"] = token
        page = jira.http.get(f"{jira.url}/rest/api/3/search/jql", params=params).json()
        seen += [i["key"] for i in page["issues"]]
        if page["isLast"]:
            assert "nextPageToken" not in page
            break
        token = page["nextPageToken"]
    assert seen == created


def test_basic_auth_with_api_token_and_bearer_pat_authenticate_others_get_401(jira):
    url = f"{jira.url}/rest/api/2/myself"
    assert requests.get(url, auth=(API_USER, API_TOKEN), timeout=5).json()["emailAddress"] == API_USER
    bearer = requests.get(url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=5)
    assert bearer.status_code == 200 and bearer.json()["accountId"]
    for headers in ({}, {"Authorization": "Basic " + base64.b64encode(f"{API_USER}:wrong".encode()).decode()},
                    {"Authorization": "Basic !!!"}, {"Authorization": "Bearer nope"}):
        refused = requests.get(url, headers=headers, timeout=5)
        assert refused.status_code == 401
        assert refused.json()["errorMessages"] and refused.json()["errors"] == {}
    assert requests.get(f"{jira.url}/rest/api/2/serverInfo", timeout=5).json()["deploymentType"] == "Cloud"


def test_only_api_versions_2_and_3_exist_and_anonymous_calls_get_401_before_the_version_is_looked_at(jira):
    for path in ("myself", "serverInfo", "issue/VDI-1/properties/x"):
        unknown = requests.get(f"{jira.url}/rest/api/4/{path}", auth=(API_USER, API_TOKEN), timeout=5)
        assert unknown.status_code == 404
        assert unknown.json()["errorMessages"] == ["The requested API version is not available."]
    assert requests.get(f"{jira.url}/rest/api/4/myself", timeout=5).status_code == 401
    assert requests.get(f"{jira.url}/rest/webhooks/1.0/webhook", auth=(API_USER, API_TOKEN), timeout=5).ok


def test_malformed_requests_get_jira_error_bodies_never_a_stack_trace(jira):
    key = jira.create_request()
    with jira.spec.sending_bad_requests():
        answers = [
            jira.http.post(f"{jira.url}/rest/api/2/issue", data="{not json",
                           headers={"Content-Type": "application/json"}),
            jira.http.post(f"{jira.url}/rest/api/2/issue", json=["a", "list"]),
            jira.http.post(f"{jira.url}/rest/api/2/issue/{key}/comment", json={"body": 42}),
            jira.http.post(f"{jira.url}/rest/api/2/issue/{key}/transitions", json={"transition": "11"}),
            jira.http.get(f"{jira.url}/rest/api/2/search", params={"jql": "project = VDI", "maxResults": "x"}),
            jira.http.get(f"{jira.url}/rest/api/9/myself"),
            jira.http.get(f"{jira.url}/rest/api/2/no/such/thing"),
            jira.http.delete(f"{jira.url}/rest/api/2/myself"),
        ]
    assert [a.status_code for a in answers] == [400, 400, 400, 400, 400, 404, 404, 405]
    for answer in answers:
        body = answer.json()
        assert set(body) == {"errorMessages", "errors"}, body
        assert "Traceback" not in answer.text


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                             st.sampled_from(["fields", "update", "transition", "body", "id", "summary",
                                              "project", "issuetype", "customfield_10050", "labels", "visibility"]),
                             inner, max_size=4), max_leaves=12),
       target=st.sampled_from(["issue", "issue/VDI-1", "issue/VDI-1/comment", "issue/VDI-1/transitions", "search"]))
def test_arbitrary_json_bodies_get_a_jira_answer_not_a_server_error(jira, body, target):
    if not jira.app.extensions["jira_site"].issues:
        jira.create_request()
    method = "PUT" if target == "issue/VDI-1" else "POST"
    with jira.spec.sending_bad_requests():
        answer = jira.http.request(method, f"{jira.url}/rest/api/2/{target}", json=body)
    assert answer.status_code < 500, answer.text
    if answer.status_code >= 400:
        assert set(answer.json()) == {"errorMessages", "errors"}

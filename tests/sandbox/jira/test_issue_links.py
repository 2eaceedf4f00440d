"""Issue links in the Jira sandbox, as the platform document defines them: the link types, ``POST issueLink``,
a link made on the create screen (``update.issuelinks``), and each issue's ``issuelinks`` field. Every call is
checked against the OpenAPI document by the ``jira`` fixture."""

from __future__ import annotations

from tests.conftest import wait_until
from tests.sandbox.jira.conftest import ALICE
from tests.sandbox.jira.test_webhooks import receiver, register  # noqa: F401 (the receiver fixture)


def link_types(jira) -> dict[str, dict]:
    response = jira.http.get(f"{jira.url}/rest/api/2/issueLinkType")
    assert response.status_code == 200, response.text
    return {t["name"]: t for t in response.json()["issueLinkTypes"]}


def issuelinks(jira, key: str) -> list[dict]:
    response = jira.http.get(f"{jira.url}/rest/api/2/issue/{key}", params={"fields": "issuelinks"})
    assert response.status_code == 200, response.text
    return response.json()["fields"]["issuelinks"]


def test_the_site_lists_jiras_default_link_types(jira):
    types = link_types(jira)
    assert {"Blocks", "Cloners", "Duplicate", "Relates"} <= set(types)
    assert (types["Blocks"]["inward"], types["Blocks"]["outward"]) == ("is blocked by", "blocks")
    one = jira.http.get(f"{jira.url}/rest/api/2/issueLinkType/{types['Relates']['id']}")
    assert one.status_code == 200 and one.json()["name"] == "Relates"


def test_a_link_shows_on_both_issues_with_the_other_end_and_its_type(jira):
    request = jira.create_request()
    removal = jira.create_request(issuetype="Desktop Removal")
    response = jira.http.post(f"{jira.url}/rest/api/2/issueLink", json={
        "type": {"name": "Relates"}, "inwardIssue": {"key": removal}, "outwardIssue": {"key": request}})
    assert response.status_code == 201 and response.content == b""
    [on_removal] = issuelinks(jira, removal)
    assert on_removal["outwardIssue"]["key"] == request and "inwardIssue" not in on_removal
    assert on_removal["outwardIssue"]["fields"]["issuetype"]["name"] == "Desktop Request"
    assert on_removal["outwardIssue"]["fields"]["status"]["name"] == "Open"
    [on_request] = issuelinks(jira, request)
    assert on_request["inwardIssue"]["key"] == removal and on_request["type"]["name"] == "Relates"
    assert on_request["id"] == on_removal["id"]

    link = jira.http.get(f"{jira.url}/rest/api/2/issueLink/{on_removal['id']}")
    assert link.status_code == 200
    assert (link.json()["inwardIssue"]["key"], link.json()["outwardIssue"]["key"]) == (removal, request)


def test_linking_twice_makes_one_link_and_a_deleted_link_is_gone_from_both_issues(jira):
    request, removal = jira.create_request(), jira.create_request(issuetype="Desktop Removal")
    body = {"type": {"id": link_types(jira)["Relates"]["id"]}, "inwardIssue": {"key": removal},
            "outwardIssue": {"key": request}}
    for _ in range(2):
        assert jira.http.post(f"{jira.url}/rest/api/2/issueLink", json=body).status_code == 201
    [link] = issuelinks(jira, removal)
    assert jira.http.delete(f"{jira.url}/rest/api/2/issueLink/{link['id']}").status_code == 204
    assert issuelinks(jira, removal) == [] and issuelinks(jira, request) == []
    assert jira.http.get(f"{jira.url}/rest/api/2/issueLink/{link['id']}").status_code == 404


def test_a_link_to_a_missing_issue_or_of_an_unknown_type_is_refused_and_nothing_is_linked(jira):
    request = jira.create_request()
    missing = jira.http.post(f"{jira.url}/rest/api/2/issueLink", json={
        "type": {"name": "Relates"}, "inwardIssue": {"key": "VDI-999"}, "outwardIssue": {"key": request}})
    assert missing.status_code == 404
    unknown = jira.http.post(f"{jira.url}/rest/api/2/issueLink", json={
        "type": {"name": "Removes"}, "inwardIssue": {"key": request}, "outwardIssue": {"key": request}})
    assert unknown.status_code == 404 and "Removes" in unknown.json()["errorMessages"][0]
    assert issuelinks(jira, request) == []


def test_a_link_made_on_the_create_screen_is_in_the_new_issue_and_its_created_webhook(jira, receiver):
    request = jira.create_request()
    register(jira, receiver.url, events=["jira:issue_created"])
    response = jira.http.post(f"{jira.url}/rest/api/2/issue", json={
        "fields": {"project": {"key": "VDI"}, "issuetype": {"name": "Desktop Removal"}, "summary": "Take it down",
                   "customfield_10051": {"accountId": ALICE}},
        "update": {"issuelinks": [{"add": {"type": {"name": "Relates"}, "outwardIssue": {"key": request}}}]}})
    assert response.status_code == 201, response.text
    removal = response.json()["key"]
    assert [link["outwardIssue"]["key"] for link in issuelinks(jira, removal)] == [request]
    [delivery] = wait_until(lambda: [d.json for d in receiver.deliveries() if d.json["issue"]["key"] == removal],
                            message="the removal's issue_created delivery")
    assert delivery["issue"]["fields"]["status"]["name"] == "Removal Requested"
    assert [link["outwardIssue"]["key"] for link in delivery["issue"]["fields"]["issuelinks"]] == [request]


def test_a_create_with_a_bad_link_creates_nothing(jira):
    before = jira.http.get(f"{jira.url}/rest/api/2/search", params={"jql": "project = VDI"}).json()["total"]
    response = jira.http.post(f"{jira.url}/rest/api/2/issue", json={
        "fields": {"project": {"key": "VDI"}, "issuetype": {"name": "Desktop Removal"}, "summary": "Take it down",
                   "customfield_10051": {"accountId": ALICE}},
        "update": {"issuelinks": [{"add": {"type": {"name": "Relates"}, "outwardIssue": {"key": "VDI-404"}}}]}})
    assert response.status_code == 404
    after = jira.http.get(f"{jira.url}/rest/api/2/search", params={"jql": "project = VDI"}).json()["total"]
    assert after == before


def test_an_edit_links_the_issue_and_a_link_to_itself_is_refused_with_nothing_written(jira):
    request, removal = jira.create_request(), jira.create_request(issuetype="Desktop Removal")
    edit = jira.http.put(f"{jira.url}/rest/api/2/issue/{removal}", json={"update": {"issuelinks": [
        {"add": {"type": {"name": "Relates"}, "outwardIssue": {"key": request}}}]}})
    assert edit.status_code == 204, edit.text
    assert [link["outwardIssue"]["key"] for link in issuelinks(jira, removal)] == [request]
    itself = jira.http.put(f"{jira.url}/rest/api/2/issue/{removal}", json={
        "fields": {"summary": "renamed"},
        "update": {"issuelinks": [{"add": {"type": {"name": "Relates"}, "outwardIssue": {"key": removal}}}]}})
    assert itself.status_code == 400
    summary = jira.http.get(f"{jira.url}/rest/api/2/issue/{removal}", params={"fields": "summary"})
    assert summary.json()["fields"]["summary"] != "renamed" and len(issuelinks(jira, removal)) == 1

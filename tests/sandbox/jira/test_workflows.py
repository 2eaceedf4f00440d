"""The sandbox's workflows as Jira's admin API gives them (the project's workflow scheme, then the workflows with
their statuses and transitions by id); every answer is checked against Jira's OpenAPI document."""

from __future__ import annotations

import requests


def test_the_projects_workflow_scheme_maps_each_issue_type_to_its_workflow(jira):
    answer = jira.http.get(f"{jira.url}/rest/api/2/workflowscheme/project", params={"projectId": "10000"})

    assert answer.status_code == 200, answer.text
    [association] = answer.json()["values"]
    assert association["projectIds"] == ["10000"]
    assert association["workflowScheme"]["issueTypeMappings"] == {"10001": "VDI: Desktop Request",
                                                                  "10002": "VDI: Desktop Removal"}


def test_an_unknown_project_has_no_scheme_and_no_project_is_a_400(jira):
    assert jira.http.get(f"{jira.url}/rest/api/2/workflowscheme/project",
                         params={"projectId": "99999"}).json() == {"values": []}
    # A request the document itself forbids (projectId is required): sent outside the checked session.
    missing = requests.get(f"{jira.url}/rest/api/2/workflowscheme/project", auth=jira.http.auth, timeout=5)
    assert missing.status_code == 400
    assert missing.json()["errors"] == {"projectId": "The ID of a project has to be provided."}


def test_workflow_search_gives_statuses_and_transitions_by_id(jira):
    answer = jira.http.get(f"{jira.url}/rest/api/2/workflow/search",
                           params={"workflowName": "VDI: Desktop Request", "expand": "transitions,statuses"})

    assert answer.status_code == 200, answer.text
    [workflow] = answer.json()["values"]
    names = {status["id"]: status["name"] for status in workflow["statuses"]}
    moves = {(tuple(names[s] for s in t["from"]), names[t["to"]], t["name"]) for t in workflow["transitions"]}
    assert ((), "Open", "Create") in moves
    assert (("Failed",), "Approved", "Retry") in moves
    assert (("Approved", "In Progress"), "Failed", "Mark Failed") in moves


def test_workflows_without_expand_carry_no_transitions(jira):
    [workflow, _] = jira.http.get(f"{jira.url}/rest/api/2/workflow/search").json()["values"]

    assert "transitions" not in workflow and "statuses" not in workflow


def test_only_administrators_read_workflows(jira):
    # The sandbox's only API account is an administrator: an anonymous call is refused before the admin check.
    assert requests.get(f"{jira.url}/rest/api/2/workflow/search", timeout=5).status_code == 401

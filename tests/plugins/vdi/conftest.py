from __future__ import annotations

import copy

import pytest

# The Jira sandbox served on a free port (fixtures ``jira`` and ``jira_spec``), for the steps that talk to Jira.
from tests.sandbox.jira.conftest import jira, jira_spec  # noqa: F401


@pytest.fixture
def jira_issue() -> dict:
    """A desktop request as Jira's REST API returns it (custom fields by id, status as an object)."""
    return copy.deepcopy({
        "id": "10001",
        "key": "VDI-12",
        "fields": {
            "summary": "Desktop for the comp team",
            "project": {"key": "VDI", "name": "Virtual desktops"},
            "issuetype": {"name": "Desktop Request"},
            "status": {"name": "Approved", "statusCategory": {"key": "indeterminate"}},
            "reporter": {"accountId": "acc-rep", "displayName": "Rita Reporter", "emailAddress": "rita@studio.example"},
            "customfield_10050": {"value": "standard", "id": "10100"},
            "customfield_10051": {"accountId": "acc-ada", "displayName": "Ada Artist",
                                  "emailAddress": "ada@studio.example"},
            "customfield_10052": None,
        },
    })


@pytest.fixture
def field_names() -> dict[str, str]:
    return {"Desktop bundle": "customfield_10050", "Desktop user": "customfield_10051",
            "Desktop OS": "customfield_10052", "Summary": "summary"}

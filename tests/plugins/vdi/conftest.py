from __future__ import annotations

import copy

import pytest

from vdi.request import JiraFieldConfig

# The sandboxes served on free ports (fixtures ``jira``, ``leostream`` and their specs), for the steps that talk
# to Jira and the broker.
from tests.sandbox.jira.conftest import jira, jira_spec  # noqa: F401
from tests.sandbox.leostream.conftest import leostream, leostream_spec  # noqa: F401


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


@pytest.fixture
def field_config() -> JiraFieldConfig:
    """The Jira field settings at their defaults (``vdi.settings``), whatever this environment sets."""
    return JiraFieldConfig.from_env({})

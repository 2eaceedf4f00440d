from __future__ import annotations

import copy
import json

import psycopg
import pytest

from tests.sandbox.jira.conftest import API_TOKEN, API_USER
from tests.sandbox.leostream.conftest import API_PASSWORD as BROKER_PASSWORD
from tests.sandbox.leostream.conftest import API_USER as BROKER_USER
from tests.sandbox.leostream.conftest import REGION, clear_region
from vdi.ec2 import aws_client
from vdi.jira import COMMENT_MARKER_PREFIX, JiraTicket
from vdi.leostream import broker_session
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


# --- the clients, from Airflow connections in the environment, as the tasks build them --------------------------
@pytest.fixture
def conn(app_database_url):
    with psycopg.connect(app_database_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def ticket(jira, monkeypatch) -> JiraTicket:
    monkeypatch.setenv("AIRFLOW_CONN_JIRA_DEFAULT", json.dumps({
        "conn_type": "jira", "host": jira.url, "login": API_USER, "password": API_TOKEN}))
    return JiraTicket.from_connection()


@pytest.fixture
def ec2(moto_endpoint, monkeypatch):
    """EC2 in the region the Leostream sandbox's centers read, emptied of earlier tests' instances (issue keys,
    and so request ids, repeat between the tests' Jira sandboxes)."""
    clear_region(moto_endpoint)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"region_name": REGION, "endpoint_url": moto_endpoint}}))
    return aws_client("ec2")


@pytest.fixture
def broker(leostream, monkeypatch):
    """A broker session on the Leostream sandbox (with its AWS center), from the ``leostream_default``
    connection."""
    leostream.login()
    leostream.add_center()
    monkeypatch.setenv("AIRFLOW_CONN_LEOSTREAM_DEFAULT", json.dumps({
        "conn_type": "leostream", "host": leostream.url, "login": BROKER_USER, "password": BROKER_PASSWORD}))
    with broker_session() as client:
        yield client


def our_comments(ticket: JiraTicket, key: str, step: str) -> list[str]:
    """The bodies of the comments the product left on ``key`` for ``step`` (its marker names the step)."""
    return [c["body"] for c in ticket.comments(key) if f"{COMMENT_MARKER_PREFIX} {step}" in c["body"]]

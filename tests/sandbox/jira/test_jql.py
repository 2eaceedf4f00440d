"""The JQL subset: what it accepts, what it refuses, and with which Jira message."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from sandbox.jira.jql import JqlError, compile_jql, parse_date


class FakeIssue:
    def __init__(self, key, status="Open", issuetype="Desktop Request", minutes_ago=0, reporter="a1"):
        self.values = {"project": key.split("-")[0], "key": key, "status": status, "issuetype": issuetype,
                       "reporter": reporter, "created": datetime.now(timezone.utc) - timedelta(minutes=minutes_ago),
                       "updated": datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)}

    def jql_value(self, name):
        return self.values[name]


class Catalog:
    def project_keys(self):
        return {"VDI": "VDI", "10000": "VDI"}

    def status_names(self):
        return {"open": "Open", "approved": "Approved", "in progress": "In Progress", "10000": "Open"}

    def issuetype_names(self):
        return {"desktop request": "Desktop Request", "desktop removal": "Desktop Removal"}

    def user_ids(self):
        return {"a1": "a1", "alice@studio.example": "a1"}

    def issue_exists(self, key):
        return key in {"VDI-1", "VDI-2", "VDI-3"}


def fresh_issues() -> list[FakeIssue]:
    """Issues aged relative to now: built per test, since collection may happen long before the test runs."""
    return [FakeIssue("VDI-1", "Open", minutes_ago=1), FakeIssue("VDI-2", "Approved", minutes_ago=30),
            FakeIssue("VDI-3", "In Progress", "Desktop Removal", minutes_ago=5)]


def keys(jql: str, strict: bool = True) -> list[str]:
    query = compile_jql(jql, Catalog(), strict)
    return [i.values["key"] for i in fresh_issues() if query.predicate(i)]


@pytest.mark.parametrize("jql, expected", [
    ("project = VDI", ["VDI-1", "VDI-2", "VDI-3"]),
    ("project = vdi AND status = Approved", ["VDI-2"]),
    ('status = "In Progress"', ["VDI-3"]),
    ("status in (Open, 'In Progress')", ["VDI-1", "VDI-3"]),
    ("status not in (Open)", ["VDI-2", "VDI-3"]),
    ("issuetype = 'Desktop Removal'", ["VDI-3"]),
    ("type != 'Desktop Removal'", ["VDI-1", "VDI-2"]),
    ("key in (VDI-1, vdi-3)", ["VDI-1", "VDI-3"]),
    ("issuekey = VDI-2", ["VDI-2"]),
    ("updated >= -15m", ["VDI-1", "VDI-3"]),
    ('updated >= "-15m" AND project = VDI and status = Open', ["VDI-1"]),
    ("created < -10m", ["VDI-2"]),
    ("reporter = 'alice@studio.example'", ["VDI-1", "VDI-2", "VDI-3"]),
    ("project = VDI ORDER BY updated DESC", ["VDI-1", "VDI-2", "VDI-3"]),
])
def test_the_subset_selects_the_matching_issues(jql, expected):
    assert keys(jql) == expected


def test_order_by_sorts_by_the_named_field():
    query = compile_jql("project = VDI ORDER BY updated ASC", Catalog())
    ordered = query.sort(fresh_issues(), lambda issue, name: issue.values[name])
    assert [i.values["key"] for i in ordered] == ["VDI-2", "VDI-3", "VDI-1"]


@pytest.mark.parametrize("jql, message", [
    ("assignee = x", "Field 'assignee' does not exist or you do not have permission to view it."),
    ("project = NOPE", "The value 'NOPE' does not exist for the field 'project'."),
    ("status = Closed", "The value 'Closed' does not exist for the field 'status'."),
    ("key in (VDI-1, VDI-99)", "An issue with key 'VDI-99' does not exist for field 'key'."),
    ("project > VDI", "The operator '>' is not supported by the 'project' field."),
    ("updated >= yesterday", "Date value 'yesterday' for field 'updated' is invalid."),
    ("project = VDI OR status = Open", "Error in the JQL Query"),
    ("project =", "Error in the JQL Query"),
    ("status in (Open", "Error in the JQL Query"),
    ("project = VDI ORDER BY summary", "Not able to sort using field 'summary'."),
    ("project = VDI status = Open", "Error in the JQL Query: Expecting either 'OR' or 'AND'"),
])
def test_queries_outside_the_subset_are_refused_with_jiras_message(jql, message):
    with pytest.raises(JqlError) as refused:
        compile_jql(jql, Catalog())
    assert str(refused.value).startswith(message)


def test_unknown_values_become_warnings_when_validation_is_relaxed():
    query = compile_jql("key in (VDI-1, VDI-99)", Catalog(), strict=False)
    assert [i.values["key"] for i in fresh_issues() if query.predicate(i)] == ["VDI-1"]
    assert query.warnings == ["An issue with key 'VDI-99' does not exist for field 'key'."]


def test_relative_and_absolute_dates():
    now = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
    assert parse_date("-15m", "updated", now) == now - timedelta(minutes=15)
    assert parse_date("-2h", "updated", now) == now - timedelta(hours=2)
    assert parse_date("-1w", "updated", now) == now - timedelta(weeks=1)
    assert parse_date("2026-11-27 08:30", "updated", now) == datetime(2026, 11, 27, 8, 30, tzinfo=timezone.utc)
    assert parse_date("2026/11/27", "updated", now) == datetime(2026, 11, 27, tzinfo=timezone.utc)

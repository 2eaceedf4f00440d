"""The reconcile's parts without Airflow: the real PostgreSQL, the Jira and Leostream sandboxes served over HTTP,
moto for EC2, and the clients built from Airflow connections in the environment, as the tasks build them."""

from __future__ import annotations

import json
import uuid

import airflow.sdk  # noqa: F401  (first: Airflow's local settings import vdi modules when Airflow starts)
import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.sandbox.jira.conftest import API_TOKEN, API_USER
from tests.sandbox.leostream.conftest import API_PASSWORD as BROKER_PASSWORD
from tests.sandbox.leostream.conftest import API_USER as BROKER_USER
from tests.sandbox.leostream.conftest import REGION, clear_region
from vdi.ec2 import aws_client
from vdi.jira import JiraTicket
from vdi.leostream import broker_session
from vdi.request import request_id_for


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
    """EC2 in the region the Leostream sandbox reads, emptied of earlier tests' instances."""
    clear_region(moto_endpoint)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"region_name": REGION, "endpoint_url": moto_endpoint}}))
    return aws_client("ec2")


@pytest.fixture
def broker(leostream, monkeypatch):
    leostream.login()
    leostream.add_center()
    monkeypatch.setenv("AIRFLOW_CONN_LEOSTREAM_DEFAULT", json.dumps({
        "conn_type": "leostream", "host": leostream.url, "login": BROKER_USER, "password": BROKER_PASSWORD}))
    with broker_session() as client:
        yield client


def insert_request(conn, issue_key: str, state: str, *, instance_id: str | None = None, user: str | None = "alice",
                   step: str | None = None, owner: str | None = None, unchanged_s: float = 0,
                   detail: dict | None = None) -> uuid.UUID:
    """A request row as the DAGs leave it (the reconcile reads rows; how they came to be is not its business)."""
    request_id = request_id_for(issue_key)
    conn.execute(
        "INSERT INTO desktop_requests (request_id, issue_key, project_key, desktop_user, bundle, os, state, step,"
        " owner_run_id, instance_id, detail, updated_at)"
        " VALUES (%s, %s, %s, %s, 'standard', 'linux', %s, %s, %s, %s, %s, now() - make_interval(secs => %s))",
        (request_id, issue_key, issue_key.rsplit("-", 1)[0], user, state, step, owner, instance_id,
         Jsonb(detail or {}), unchanged_s))
    return request_id


def request_row(conn, issue_key: str) -> dict:
    from vdi.store.requests import get_request

    return get_request(conn, issue_key)


def findings(conn) -> list[tuple]:
    return conn.execute("SELECT kind, subject, action, resolved_at IS NULL FROM reconcile_findings"
                        " ORDER BY kind, subject").fetchall()

"""The steps of vdi_provision without Airflow: the real PostgreSQL, the Jira and Leostream sandboxes served over
HTTP, moto for EC2, and the clients built from Airflow connections set in the environment, as the tasks build
them. Every step is run again to show that nothing happens twice."""

from __future__ import annotations

import json
from dataclasses import replace

import boto3
import psycopg
import pytest
import requests
import yaml
from atlassian import Jira

from tests.conftest import at_once, wait_until
from tests.sandbox.jira.conftest import ALICE, API_TOKEN, API_USER
from tests.sandbox.leostream.conftest import API_PASSWORD as BROKER_PASSWORD
from tests.sandbox.leostream.conftest import API_USER as BROKER_USER
from tests.sandbox.leostream.conftest import REGION, clear_region
from vdi import provision
from vdi.broker import pool_name_for
from vdi.catalog import DEFAULT_CATALOG_PATH, load_catalog
from vdi.ec2 import TAG_REQUEST, aws_client, instance_name
from vdi.jira import COMMENT_MARKER_PREFIX, JiraTicket, comment_marker
from vdi.leostream import LeostreamHook, broker_session
from vdi.request import DesktopRequest, request_id_for
from vdi.states import RequestState, Run
from vdi.steps import Step
from vdi.store import requests as store
from vdi.userdata import desktop_user_data

TRIGGER = "Approved"
APPROVE, MARK_FAILED = "11", "41"
WEBHOOK_RUN = Run("delivery-run-1")


# --- the clients, from Airflow connections in the environment -------------------------------------------------
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


@pytest.fixture(scope="module")
def region_image(moto_endpoint) -> str:
    """One of moto's images in the test region (listing them takes seconds: once per module)."""
    ec2 = boto3.client("ec2", endpoint_url=moto_endpoint, region_name=REGION)
    return ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]


@pytest.fixture
def catalog(ec2, region_image, tmp_path):
    """The shipped catalog, moved to the test region with one of moto's images there."""
    iam = aws_client("iam")
    try:
        iam.create_instance_profile(InstanceProfileName="vdi-desktop")
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    data = yaml.safe_load(DEFAULT_CATALOG_PATH.read_text())
    data["region"] = REGION
    for bundle in data["bundles"].values():
        bundle["images"] = {os_family: {REGION: region_image} for os_family in bundle["images"]}
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_catalog(path)


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


# --- helpers ------------------------------------------------------------------------------------------------
def approved_ticket(jira, bundle: str = "standard") -> str:
    key = jira.create_request(bundle=bundle, user=ALICE)
    jira.transition(key, APPROVE)
    return key


def sandbox_calls(base_url: str, method: str, path: str) -> list[dict]:
    response = requests.get(f"{base_url}/_sandbox/calls", params={"method": method, "path": path}, timeout=5)
    response.raise_for_status()
    return response.json()


def our_comments(ticket: JiraTicket, key: str, step: str) -> list[str]:
    return [c["body"] for c in ticket.comments(key) if f"{COMMENT_MARKER_PREFIX} {step}" in c["body"]]


def claimed(conn, ticket, key: str, catalog, field_config) -> DesktopRequest:
    """The first steps of a webhook delivery's run, up to that run owning the request."""
    request = DesktopRequest.model_validate(provision.validate(ticket, key, field_config, conn, WEBHOOK_RUN))
    assert provision.dedupe(conn, request, WEBHOOK_RUN, TRIGGER)
    assert provision.persist(conn, ticket, request, WEBHOOK_RUN, catalog, TRIGGER)
    return request


def launched(conn, ec2, request: DesktopRequest, catalog) -> str:
    os_family = catalog.resolve_os(request)
    user_data = desktop_user_data(request, os_family, broker_address="broker.studio.internal", region=catalog.region)
    return provision.launch(conn, ec2, request, catalog, os_family, user_data)


def wait_for_scan(broker, center_id: int) -> None:
    """Until the center's scan is over: a center scans once at a time (409 CONFLICT while one runs)."""
    wait_until(lambda: broker.request("GET", f"/centers/{center_id}")["status"] == 1, message="the scan to finish")


def live_instances(ec2, request: DesktopRequest) -> list[dict]:
    reservations = ec2.describe_instances(Filters=[
        {"Name": f"tag:{TAG_REQUEST}", "Values": [str(request.request_id)]},
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
    ])["Reservations"]
    return [i for r in reservations for i in r["Instances"]]


# --- validate -----------------------------------------------------------------------------------------------
def test_validate_reads_an_approved_ticket_fresh_from_jira_as_a_request(conn, jira, ticket, field_config):
    key = approved_ticket(jira, bundle="gpu")
    request = provision.validate(ticket, key, field_config, conn, WEBHOOK_RUN)
    assert (request["issue_key"], request["bundle"], request["status"]) == (key, "gpu", "Approved")
    assert request["user"]["login"] == "alice@studio.example"
    assert store.get_request(conn, key) is None  # reading records nothing


def test_validate_leaves_a_ticket_outside_the_trigger_status_alone(conn, jira, ticket, field_config):
    key = jira.create_request()  # Open: not approved yet
    for run in (WEBHOOK_RUN, Run("manual__1", manual=True)):
        assert provision.validate(ticket, key, field_config, conn, run) is None
    assert store.get_request(conn, key) is None
    assert ticket.comments(key) == []


def test_validate_rejects_an_invalid_ticket_with_one_comment_however_often_it_runs(conn, jira, ticket, field_config):
    key = approved_ticket(jira)
    # This site's tickets carry no "Desktop flavour" field: every ticket lacks the configured bundle.
    fields = replace(field_config, bundle_field="Desktop flavour")
    for _ in range(2):
        assert provision.validate(ticket, key, fields, conn, WEBHOOK_RUN) is None
    row = store.get_request(conn, key)
    assert (row["state"], row["step"]) == (RequestState.REJECTED, Step.VALIDATE)
    comments = our_comments(ticket, key, "invalid-")
    assert len(comments) == 1
    assert "cannot be processed: missing Desktop flavour" in comments[0]
    assert [(e["step"], e["outcome"]) for e in store.events(conn, request_id_for(key))] == [
        (Step.VALIDATE, "invalid")] * 2


def test_a_manual_run_resumes_a_failed_request_whatever_the_tickets_status(conn, jira, ticket, catalog, field_config):
    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    provision.mark_in_progress(conn, ticket, request, "linux")
    provision.record_failure(conn, ticket, key, WEBHOOK_RUN, Step.REGISTER_DESKTOP, RuntimeError("broker down"),
                             "delivery-run-1-3")
    assert ticket.status(key) == "Failed"

    # The failure comment is a webhook delivery of its own: that run must not resume (it would loop) ...
    assert provision.validate(ticket, key, field_config, conn, Run("delivery-run-2")) is None
    refused = store.claim(conn, request, Run("delivery-run-2"), TRIGGER)
    assert "trigger vdi_provision by hand with issue_key" in refused.reason
    # ... and the run the message asks for, started by hand, resumes it though the ticket is in Failed.
    manual = Run("manual__2026-01-02", manual=True)
    resumed = provision.validate(ticket, key, field_config, conn, manual)
    assert resumed is not None and resumed["status"] == "Failed"
    resumed = DesktopRequest.model_validate(resumed)
    assert provision.dedupe(conn, resumed, manual, TRIGGER)
    assert provision.persist(conn, ticket, resumed, manual, catalog, TRIGGER)
    assert store.get_request(conn, key)["owner_run_id"] == manual.run_id
    provision.mark_in_progress(conn, ticket, resumed, "linux")
    assert ticket.status(key) == "In Progress"


def test_the_run_that_failed_resumes_its_own_claim_when_its_task_is_cleared(conn, jira, ticket, catalog, field_config):
    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    provision.mark_in_progress(conn, ticket, request, "linux")
    provision.record_failure(conn, ticket, key, WEBHOOK_RUN, Step.LAUNCH_INSTANCE, RuntimeError("quota"), "a-1")
    assert provision.validate(ticket, key, field_config, conn, WEBHOOK_RUN) is not None
    assert provision.dedupe(conn, request, WEBHOOK_RUN, TRIGGER)
    assert provision.persist(conn, ticket, request, WEBHOOK_RUN, catalog, TRIGGER)


# --- dedupe and persist -------------------------------------------------------------------------------------
def test_dedupe_lets_the_owner_go_on_and_stops_any_other_run(conn, jira, ticket, catalog, field_config):
    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    assert provision.dedupe(conn, request, WEBHOOK_RUN, TRIGGER)
    assert not provision.dedupe(conn, request, Run("delivery-run-2"), TRIGGER)
    assert not provision.dedupe(conn, request, Run("manual__1", manual=True), TRIGGER)


def test_persist_claims_the_request_for_the_run_once(conn, jira, ticket, catalog, field_config):
    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    row = store.get_request(conn, key)
    assert (row["state"], row["owner_run_id"], row["bundle"]) == (RequestState.IN_PROGRESS, WEBHOOK_RUN.run_id,
                                                                  "standard")
    assert not provision.persist(conn, ticket, request, Run("delivery-run-2"), catalog, TRIGGER)
    assert store.get_request(conn, key)["owner_run_id"] == WEBHOOK_RUN.run_id
    assert ticket.comments(key) == []


def test_persist_rejects_a_request_outside_the_guardrails_with_one_comment(conn, jira, ticket, catalog, field_config):
    key = approved_ticket(jira, bundle="large")  # not offered to project VDI
    request = DesktopRequest.model_validate(provision.validate(ticket, key, field_config, conn, WEBHOOK_RUN))
    for _ in range(2):
        assert not provision.persist(conn, ticket, request, WEBHOOK_RUN, catalog, TRIGGER)
    row = store.get_request(conn, key)
    assert (row["state"], row["step"]) == (RequestState.REJECTED, Step.PERSIST)
    comments = our_comments(ticket, key, "rejected-")
    assert len(comments) == 1
    assert "bundle 'large' is not offered to project VDI" in comments[0]


# --- jira_in_progress ---------------------------------------------------------------------------------------
def test_mark_in_progress_moves_the_ticket_and_comments_once(conn, jira, ticket, catalog, field_config):
    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    for _ in range(2):
        provision.mark_in_progress(conn, ticket, request, "linux")
    assert ticket.status(key) == "In Progress"
    comments = our_comments(ticket, key, "in_progress/")
    assert len(comments) == 1 and "preparing a standard desktop (linux) for Alice Artist" in comments[0]
    assert len(sandbox_calls(jira.url, "POST", f"/rest/api/2/issue/{key}/transitions")) == 2  # approve, start
    moved = [e["detail"]["transitioned"] for e in store.events(conn, request.request_id)
             if e["step"] == Step.JIRA_IN_PROGRESS]
    assert moved == [True, False]


# --- launch_instance and wait_instance_running --------------------------------------------------------------
def test_launch_starts_one_tagged_instance_and_a_rerun_finds_it(conn, jira, ticket, ec2, catalog, field_config):
    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    first = launched(conn, ec2, request, catalog)
    assert launched(conn, ec2, request, catalog) == first
    assert [i["InstanceId"] for i in live_instances(ec2, request)] == [first]
    assert store.get_request(conn, key)["instance_id"] == first
    launches = [e["detail"]["launched_now"] for e in store.events(conn, request.request_id)
                if e["step"] == Step.LAUNCH_INSTANCE]
    assert launches == [True, False]


def test_instance_ready_once_running_with_passed_checks_and_fails_for_a_stopped_one(conn, jira, ticket, ec2, catalog,
                                                                                    field_config):
    key = approved_ticket(jira)
    instance_id = launched(conn, ec2, claimed(conn, ticket, key, catalog, field_config), catalog)
    assert provision.instance_ready(ec2, instance_id) is True
    assert provision.instance_ready(ec2, instance_id) is True
    ec2.stop_instances(InstanceIds=[instance_id])
    with pytest.raises(RuntimeError, match=f"instance {instance_id} is stopp"):
        provision.instance_ready(ec2, instance_id)


# --- register_desktop and wait_desktop_in_pool --------------------------------------------------------------
def test_register_creates_the_broker_objects_once(conn, jira, ticket, ec2, catalog, broker, field_config):
    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    instance_id = launched(conn, ec2, request, catalog)
    first = provision.register(conn, broker, request, catalog, instance_id)
    wait_for_scan(broker, first["center_id"])
    assert provision.register(conn, broker, request, catalog, instance_id) == first
    assert [p["id"] for p in broker.pools() if p["name"] == pool_name_for(key)] == [first["pool_id"]]
    assert [p["id"] for p in broker.policies() if p["name"] == first["policy_name"]] == [first["policy_id"]]
    assert [a["id"] for a in broker.pool_assignments(first["policy_id"])] == [first["assignment_id"]]
    assert store.get_request(conn, key)["detail"]["leostream"] == first


def test_desktop_discovered_once_the_broker_lists_the_instance_in_its_pool(conn, jira, ticket, ec2, catalog, broker,
                                                                           leostream, field_config):
    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    registration = provision.register(conn, broker, request, catalog, "i-launched-later")
    scans = f"/rest/v1/centers/{registration['center_id']}/scan"
    wait_for_scan(broker, registration["center_id"])
    scans_before = len(sandbox_calls(leostream.url, "POST", scans))
    assert provision.desktop_discovered(broker, request, registration) is False
    assert len(sandbox_calls(leostream.url, "POST", scans)) == scans_before + 1

    launched(conn, ec2, request, catalog)
    wait_for_scan(broker, registration["center_id"])
    leostream.scan(registration["center_id"])
    assert provision.desktop_discovered(broker, request, registration) is True
    assert [vm["name"] for vm in broker.pool(registration["pool_id"])["vms_list"]] == [instance_name(key)]


# --- jira_ready ---------------------------------------------------------------------------------------------
def test_finish_ready_hands_the_desktop_over_once_with_timings(conn, jira, ticket, ec2, catalog, broker, field_config):
    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    provision.mark_in_progress(conn, ticket, request, "linux")
    instance_id = launched(conn, ec2, request, catalog)
    registration = provision.register(conn, broker, request, catalog, instance_id)
    address = LeostreamHook().broker_address()
    for _ in range(2):
        provision.finish_ready(conn, ticket, request, registration, address, instance_id)
    assert ticket.status(key) == "Ready"
    comments = our_comments(ticket, key, "ready/")
    assert len(comments) == 1
    assert f"* Broker: {address}" in comments[0] and f"* Desktop: {instance_name(key)} (standard)" in comments[0]
    row = store.get_request(conn, key)
    assert (row["state"], row["step"]) == (RequestState.READY, Step.JIRA_READY)
    ready = [e["detail"] for e in store.events(conn, request.request_id) if e["outcome"] == "ready"]
    assert [d["transitioned"] for d in ready] == [True, False]
    timings = ready[0]["timings_s"]
    assert set(timings) == {Step.JIRA_IN_PROGRESS, Step.LAUNCH_INSTANCE, Step.REGISTER_DESKTOP}
    assert timings[Step.JIRA_IN_PROGRESS] <= timings[Step.LAUNCH_INSTANCE] <= timings[Step.REGISTER_DESKTOP]
    assert provision.validate(ticket, key, field_config, conn, Run("delivery-run-2")) is None


# --- a task's last failure ----------------------------------------------------------------------------------
def test_record_failure_fails_the_request_with_one_plain_comment(conn, jira, ticket, catalog, field_config):
    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    provision.mark_in_progress(conn, ticket, request, "linux")
    error = RuntimeError("login refused: password=s3cr3t-value\n  at line 2")
    for _ in range(2):
        provision.record_failure(conn, ticket, key, WEBHOOK_RUN, Step.REGISTER_DESKTOP, error, "delivery-run-1-3")
    row = store.get_request(conn, key)
    assert (row["state"], row["step"]) == (RequestState.FAILED, Step.REGISTER_DESKTOP)
    assert ticket.status(key) == "Failed"
    comments = our_comments(ticket, key, "failed-")
    assert len(comments) == 1
    assert comments[0].startswith("Provisioning stopped while registering the desktop with Leostream: RuntimeError:")
    assert "s3cr3t-value" not in comments[0] and "at line 2" in comments[0].splitlines()[0]


def test_record_failure_of_a_run_that_does_not_own_the_request_changes_nothing(conn, jira, ticket, ec2, catalog,
                                                                              broker, field_config):
    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    provision.mark_in_progress(conn, ticket, request, "linux")
    instance_id = launched(conn, ec2, request, catalog)
    registration = provision.register(conn, broker, request, catalog, instance_id)
    provision.finish_ready(conn, ticket, request, registration, "broker.studio.internal", instance_id)
    comments_before = ticket.comments(key)

    # A stray delivery's run for the ready ticket fails at validate (Jira was down for it, say).
    provision.record_failure(conn, ticket, key, Run("delivery-run-9"), Step.VALIDATE, TimeoutError(), "x-1")
    assert store.get_request(conn, key)["state"] == RequestState.READY
    assert ticket.status(key) == "Ready"
    assert ticket.comments(key) == comments_before


# --- comments under the ticket lock, failure causes ---------------------------------------------------------
def test_runs_commenting_on_one_ticket_at_once_post_the_comment_once(app_database_url, jira):
    key = jira.create_request()
    # A slow comment POST: without the ticket lock, every run would find no comment and post its own.
    requests.post(f"{jira.url}/_sandbox/faults", timeout=5, json={
        "method": "POST", "path": f"/rest/api/2/issue/{key}/comment", "latency_ms": 300, "times": None,
    }).raise_for_status()

    def comment(connection, n):
        ticket = JiraTicket(Jira(url=jira.url, username=API_USER, password=API_TOKEN, api_version="2"))
        return provision.comment_once(connection, ticket, key, "rejected-abc", f"Not accepted (run {n}).")

    assert sorted(at_once(app_database_url, comment, times=6)) == [False] * 5 + [True]
    marker = comment_marker(str(request_id_for(key)), "rejected-abc")
    ticket = JiraTicket(Jira(url=jira.url, username=API_USER, password=API_TOKEN, api_version="2"))
    assert len([c for c in ticket.comments(key) if marker in c["body"]]) == 1


@pytest.mark.parametrize("message, secret", [
    ("connect to postgresql://vdi:hunter2pass@db:5432/vdi failed", "hunter2pass"),
    ("401 for header Authorization: Bearer eyJhbGciOi.secret.token", "eyJhbGciOi.secret.token"),
    ("login refused: password=s3cr3t-value", "s3cr3t-value"),
    ('body {"sid": "abcdef123456"} rejected', "abcdef123456"),
])
def test_readable_cause_hides_secret_looking_values(message, secret):
    cause = provision.readable_cause(RuntimeError(message))
    assert secret not in cause
    assert cause.startswith("RuntimeError: ")


def test_readable_cause_is_one_bounded_line():
    cause = provision.readable_cause(ValueError("line one\nline two\n" + "x" * 1000))
    assert "\n" not in cause
    assert len(cause) <= len("ValueError: ") + 300


def test_readable_cause_names_the_error_type_when_the_message_is_empty():
    assert provision.readable_cause(TimeoutError()) == "TimeoutError: TimeoutError"

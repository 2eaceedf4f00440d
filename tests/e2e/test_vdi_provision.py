"""vdi_provision end to end: Jira sandbox → signed webhook → bridge → real Airflow scheduler → moto EC2 →
Leostream sandbox → back to Jira, with the app state in the stack's PostgreSQL."""

from __future__ import annotations

import boto3
import psycopg
import pytest
import requests
from atlassian import Jira
from psycopg.rows import dict_row

from sandbox.demo import file_and_approve, file_request
from tests.conftest import wait_until
from vdi.ec2 import decoded_user_data, instance_name
from vdi.jira import COMMENT_MARKER_PREFIX
from vdi.leostream import LeostreamClient
from vdi.request import request_id_for

pytestmark = pytest.mark.e2e

RUN_DEADLINE_S = 300


@pytest.fixture(scope="module")
def jira(local_stack) -> Jira:
    return Jira(url=local_stack["JIRA_URL"], username=local_stack["JIRA_USER"], password=local_stack["JIRA_TOKEN"])


@pytest.fixture(scope="module")
def ec2(local_stack):
    return boto3.client("ec2", endpoint_url=local_stack["AWS_ENDPOINT_URL"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="module")
def iam(local_stack):
    return boto3.client("iam", endpoint_url=local_stack["AWS_ENDPOINT_URL"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="module")
def broker(local_stack) -> LeostreamClient:
    with LeostreamClient(local_stack["LEOSTREAM_URL"], local_stack["LEOSTREAM_USER"],
                         local_stack["LEOSTREAM_PASSWORD"]) as client:
        yield client


@pytest.fixture
def sandbox_faults(local_stack):
    """Add fault rules to a sandbox; every rule is removed after the test."""
    added = []

    def add(service: str, **rule):
        url = f"{local_stack[service]}/_sandbox/faults"
        requests.post(url, json=rule, timeout=5).raise_for_status()
        added.append(url)

    yield add
    for url in set(added):
        requests.delete(url, timeout=5)


def request_row(local_stack, issue_key: str) -> dict | None:
    with psycopg.connect(local_stack["VDI_DATABASE_URL"], row_factory=dict_row) as conn:
        return conn.execute("SELECT * FROM desktop_requests WHERE issue_key = %s", (issue_key,)).fetchone()


def request_events(local_stack, issue_key: str) -> list[dict]:
    with psycopg.connect(local_stack["VDI_DATABASE_URL"], row_factory=dict_row) as conn:
        return conn.execute("SELECT step, outcome, detail FROM request_events WHERE request_id = %s"
                            " ORDER BY event_id", (request_id_for(issue_key),)).fetchall()


def wait_for_state(local_stack, issue_key: str, *states: str) -> dict:
    return wait_until(lambda: (row := request_row(local_stack, issue_key)) and row["state"] in states and row,
                      RUN_DEADLINE_S, f"{issue_key} to be {' or '.join(states)}", interval_s=2)


def live_instances(ec2, issue_key: str) -> list[dict]:
    pages = ec2.get_paginator("describe_instances").paginate(Filters=[
        {"Name": "tag:vdi:issue", "Values": [issue_key]},
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}])
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


def our_comments(jira: Jira, issue_key: str, step: str) -> list[dict]:
    comments = jira.issue_get_comments(issue_key)["comments"]
    return [c for c in comments if f"{COMMENT_MARKER_PREFIX} {step}" in c["body"]]


def named(items: list[dict], name: str) -> list[dict]:
    return [item for item in items if item["name"] == name]


def assert_one_desktop(local_stack, jira, ec2, broker, issue_key: str, user_email: str) -> None:
    """Exactly one of everything the request owns, and the ticket handed over."""
    instances = live_instances(ec2, issue_key)
    assert len(instances) == 1
    tags = {t["Key"]: t["Value"] for t in instances[0]["Tags"]}
    assert tags["vdi:request"] == str(request_id_for(issue_key))
    assert tags["vdi:user"] == user_email
    pools = named(broker.pools(), f"vdi-{issue_key}")
    assert len(pools) == 1
    vms = broker.pool(pools[0]["id"])["vms_list"]
    assert [vm["name"] for vm in vms] == [instance_name(issue_key)]
    policies = named(broker.policies(), f"vdi-user-{user_email}")
    assert len(policies) == 1
    assignments = [a for a in broker.pool_assignments(policies[0]["id"]) if a["pool_id"] == pools[0]["id"]]
    assert len(assignments) == 1
    assert jira.get_issue(issue_key, fields="status")["fields"]["status"]["name"] == "Ready"
    assert len(our_comments(jira, issue_key, "ready/")) == 1
    assert len(our_comments(jira, issue_key, "in_progress/")) == 1
    row = request_row(local_stack, issue_key)
    assert (row["state"], row["instance_id"]) == ("ready", instances[0]["InstanceId"])


def test_approved_ticket_becomes_a_ready_desktop(local_stack, jira, ec2, broker):
    issue_key = file_and_approve(jira, "standard", "bob@studio.example")
    wait_for_state(local_stack, issue_key, "ready", "failed", "rejected")
    assert request_row(local_stack, issue_key)["state"] == "ready", request_events(local_stack, issue_key)
    assert_one_desktop(local_stack, jira, ec2, broker, issue_key, "bob@studio.example")

    script = decoded_user_data(ec2, live_instances(ec2, issue_key)[0]["InstanceId"])
    assert local_stack["LEOSTREAM_URL"].split("://")[1] in script
    assert "standard" in script
    for secret_key in ("LEOSTREAM_PASSWORD", "JIRA_TOKEN", "AIRFLOW_PASSWORD", "JIRA_WEBHOOK_SECRET"):
        assert local_stack[secret_key] not in script

    users = requests.get(f"{local_stack['LEOSTREAM_URL']}/_sandbox/calls", timeout=5,
                         params={"method": "POST", "path": "/rest/v1/users"}).json()
    assert any(call["body"]["user_login"] == "bob@studio.example" and call["status"] in (201, 409)
               for call in users)

    steps = [(e["step"], e["outcome"]) for e in request_events(local_stack, issue_key)]
    assert steps[0] == ("persist", "claimed")
    assert ("launch_instance", "launched") in steps and ("register_desktop", "done") in steps
    assert steps[-1] == ("jira_ready", "ready")
    timings = request_events(local_stack, issue_key)[-1]["detail"]["timings_s"]
    assert timings["launch_instance"] <= timings["register_desktop"]


def test_rerunning_a_successful_run_changes_nothing(local_stack, jira, ec2, broker, airflow_api):
    issue_key = file_and_approve(jira, "standard", "carol@studio.example")
    row = wait_for_state(local_stack, issue_key, "ready", "failed")
    assert row["state"] == "ready"
    run_id = row["owner_run_id"]
    wait_until(lambda: airflow_api.dag_run("vdi_provision", run_id)["state"] == "success", 60, "the run to finish",
               interval_s=1)
    events_before = len(request_events(local_stack, issue_key))

    airflow_api.post("/dags/vdi_provision/clearTaskInstances",
                     {"dry_run": False, "dag_run_id": run_id, "only_failed": False, "reset_dag_runs": True})
    wait_until(lambda: airflow_api.dag_run("vdi_provision", run_id)["state"] in ("success", "failed"),
               RUN_DEADLINE_S, "the cleared run to finish", interval_s=2)
    assert airflow_api.dag_run("vdi_provision", run_id)["state"] == "success"
    assert_one_desktop(local_stack, jira, ec2, broker, issue_key, "carol@studio.example")
    assert len(request_events(local_stack, issue_key)) == events_before


def test_bundle_outside_the_guardrails_is_rejected_without_an_aws_call(local_stack, jira, ec2):
    issue_key = file_and_approve(jira, "large", "bob@studio.example")
    row = wait_for_state(local_stack, issue_key, "rejected", "ready", "failed")
    assert row["state"] == "rejected"
    assert live_instances(ec2, issue_key) == []
    comments = our_comments(jira, issue_key, "rejected-")
    assert len(comments) == 1
    assert "not offered to project VDI" in comments[0]["body"]


def test_a_second_event_for_a_ready_ticket_is_a_no_op(local_stack, jira, ec2, broker, airflow_api):
    issue_key = file_and_approve(jira, "gpu", "bob@studio.example")
    assert wait_for_state(local_stack, issue_key, "ready", "failed")["state"] == "ready"
    runs_before = len(airflow_api.dag_runs("vdi_provision"))
    jira.issue_add_comment(issue_key, "Thanks!")  # a jira:issue_updated delivery for the same ticket
    wait_until(lambda: len(airflow_api.dag_runs("vdi_provision")) > runs_before, 60, "the comment's DAG run",
               interval_s=1)
    wait_until(lambda: all(r["state"] in ("success", "failed") for r in airflow_api.dag_runs("vdi_provision")),
               RUN_DEADLINE_S, "every run to finish", interval_s=2)
    assert_one_desktop(local_stack, jira, ec2, broker, issue_key, "bob@studio.example")


# Each fault hits one external step until it is cleared: (sandbox, rule, the step that fails).
FAULTS = {
    "jira": ("JIRA_URL", {"method": "GET", "path": "/rest/api/2/issue/*/transitions", "status": 503,
                          "times": None}, "jira_in_progress"),
    "leostream-register": ("LEOSTREAM_URL", {"method": "POST", "path": "/rest/v1/pools", "status": 500,
                                             "times": None}, "register_desktop"),
    "leostream-discovery": ("LEOSTREAM_URL", {"method": "GET", "path": "/rest/v1/pools/*", "status": 503,
                                              "times": None}, "wait_desktop_in_pool"),
}


@pytest.mark.parametrize("fault", [*FAULTS, "aws-launch"])
def test_fault_at_a_step_fails_with_a_clear_comment_and_a_rerun_recovers(
        fault, local_stack, jira, ec2, iam, broker, airflow_api, sandbox_faults):
    issue_key = file_request(jira, "standard", "carol@studio.example")
    approve = next(t["id"] for t in jira.get_issue_transitions(issue_key) if t["to"] == "Approved")
    if fault == "aws-launch":
        step = "launch_instance"
        iam.remove_role_from_instance_profile(InstanceProfileName="vdi-desktop", RoleName="vdi-desktop")
        iam.delete_instance_profile(InstanceProfileName="vdi-desktop")
    else:
        service, rule, step = FAULTS[fault]
        sandbox_faults(service, **rule)
    jira.set_issue_status_by_transition_id(issue_key, approve)  # one POST: untouched by the faults above
    row = wait_for_state(local_stack, issue_key, "failed", "ready")
    assert (row["state"], row["step"]) == ("failed", step)
    failure_comments = our_comments(jira, issue_key, f"failed-{step}-")
    assert len(failure_comments) == 1
    body = failure_comments[0]["body"]
    assert "Traceback" not in body and local_stack["LEOSTREAM_PASSWORD"] not in body
    assert "Provisioning stopped while" in body

    # The cause is fixed; an operator clears the failed task in the UI.
    if fault == "aws-launch":
        iam.create_instance_profile(InstanceProfileName="vdi-desktop")
        iam.add_role_to_instance_profile(InstanceProfileName="vdi-desktop", RoleName="vdi-desktop")
    else:
        requests.delete(f"{local_stack[service]}/_sandbox/faults", timeout=5)
    run_id = row["owner_run_id"]
    wait_until(lambda: airflow_api.dag_run("vdi_provision", run_id)["state"] == "failed", 120, "the run to fail",
               interval_s=1)
    airflow_api.post("/dags/vdi_provision/clearTaskInstances",
                     {"dry_run": False, "dag_run_id": run_id, "only_failed": True, "reset_dag_runs": True})
    assert wait_for_state(local_stack, issue_key, "ready")["state"] == "ready"
    user_email = request_row(local_stack, issue_key)["desktop_user"]
    assert_one_desktop(local_stack, jira, ec2, broker, issue_key, user_email)
    assert len(our_comments(jira, issue_key, f"failed-{step}-")) == 1

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
from vdi.identity import policy_name_for
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


def status(jira: Jira, issue_key: str) -> str:
    return jira.get_issue(issue_key, fields="status")["fields"]["status"]["name"]


def retry_in_jira(jira: Jira, issue_key: str) -> None:
    """The requester's Retry on a failed ticket (Failed -> Approved), which the webhook delivers."""
    retry = next(t["id"] for t in jira.get_issue_transitions(issue_key) if t["to"] == "Approved")
    jira.set_issue_status_by_transition_id(issue_key, retry)


def instance_states(ec2, issue_key: str) -> dict[str, str]:
    """Every instance launched for the ticket (terminated ones too): id -> state."""
    pages = ec2.get_paginator("describe_instances").paginate(Filters=[
        {"Name": "tag:vdi:issue", "Values": [issue_key]}])
    return {i["InstanceId"]: i["State"]["Name"] for page in pages for r in page["Reservations"]
            for i in r["Instances"]}


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
    policies = named(broker.policies(), policy_name_for(user_email))
    assert len(policies) == 1
    assignments = [a for a in broker.pool_assignments(policies[0]["id"]) if a["pool_id"] == pools[0]["id"]]
    assert len(assignments) == 1
    assert status(jira, issue_key) == "Ready"
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
    # Ready only after the first boot reported done and the broker counted the desktop's agent.
    assert ("wait_bootstrap", "done") in steps and ("wait_agent_running", "done") in steps
    assert steps[-1] == ("jira_ready", "ready")
    timings = request_events(local_stack, issue_key)[-1]["detail"]["timings_s"]
    assert timings["launch_instance"] <= timings["wait_bootstrap"] <= timings["register_desktop"]
    assert timings["register_desktop"] <= timings["wait_agent_running"]


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


@pytest.mark.slow  # waits out the task retries
def test_a_stray_run_failing_on_a_ready_ticket_posts_nothing_and_changes_nothing(
        local_stack, jira, ec2, broker, airflow_api, sandbox_faults):
    issue_key = file_and_approve(jira, "gpu", "bob@studio.example")
    assert wait_for_state(local_stack, issue_key, "ready", "failed")["state"] == "ready"
    events_before = request_events(local_stack, issue_key)
    # A manual run for the ready ticket while Jira's GET issue answers 503: it fails reading the ticket.
    sandbox_faults("JIRA_URL", method="GET", path=f"/rest/api/2/issue/{issue_key}", status=503, times=None)
    stray = airflow_api.trigger("vdi_provision", {"issue_key": issue_key})
    wait_until(lambda: airflow_api.dag_run("vdi_provision", stray)["state"] in ("success", "failed"),
               RUN_DEADLINE_S, "the stray run to finish", interval_s=2)
    assert airflow_api.dag_run("vdi_provision", stray)["state"] == "failed"
    requests.delete(f"{local_stack['JIRA_URL']}/_sandbox/faults", timeout=5)

    assert our_comments(jira, issue_key, "failed-") == []
    assert request_events(local_stack, issue_key) == events_before
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
# Failures after the launch dispose of the instance (the catalog's default: terminate): those tickets are
# provisioned again by Jira's Retry; failures before it by clearing the failed task in the UI.
AFTER_LAUNCH = {"leostream-register", "leostream-discovery"}


@pytest.mark.slow  # waits out the task retries
@pytest.mark.parametrize("fault", [*FAULTS, "aws-launch"])
def test_fault_at_a_step_fails_with_a_plain_comment_and_a_retry_recovers(
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
    # The state is recorded first; the ticket's move to Failed (retried while Jira answers 503) and the comment follow.
    failure_comments = wait_until(lambda: our_comments(jira, issue_key, f"failed-{step}-"), 120,
                                  "the failure comment", interval_s=1)
    assert len(failure_comments) == 1
    body = failure_comments[0]["body"]
    assert "Traceback" not in body and local_stack["LEOSTREAM_PASSWORD"] not in body
    assert "Provisioning stopped while" in body and "contact the platform team" in body
    for internal in (local_stack["LEOSTREAM_URL"], local_stack["JIRA_URL"], local_stack["AWS_ENDPOINT_URL"], "arn:"):
        assert internal not in body

    # The cause is fixed ...
    if fault == "aws-launch":
        iam.create_instance_profile(InstanceProfileName="vdi-desktop")
        iam.add_role_to_instance_profile(InstanceProfileName="vdi-desktop", RoleName="vdi-desktop")
    else:
        requests.delete(f"{local_stack[service]}/_sandbox/faults", timeout=5)
    run_id = row["owner_run_id"]
    wait_until(lambda: airflow_api.dag_run("vdi_provision", run_id)["state"] == "failed", 120, "the run to fail",
               interval_s=1)
    if fault in AFTER_LAUNCH:
        # ... the failed request's instance is gone (no billing leftovers), and the requester retries in Jira.
        assert live_instances(ec2, issue_key) == []
        assert status(jira, issue_key) == "Failed" and "use Retry on this ticket" in body
        retry_in_jira(jira, issue_key)
    else:
        # ... and an operator clears the failed task in the UI.
        airflow_api.post("/dags/vdi_provision/clearTaskInstances",
                         {"dry_run": False, "dag_run_id": run_id, "only_failed": True, "reset_dag_runs": True})
    assert wait_for_state(local_stack, issue_key, "ready")["state"] == "ready"
    user_email = request_row(local_stack, issue_key)["desktop_user"]
    assert_one_desktop(local_stack, jira, ec2, broker, issue_key, user_email)
    assert len(our_comments(jira, issue_key, f"failed-{step}-")) == 1


def first_boot(local_stack, issue_key: str, outcome: str, **extra) -> None:
    """What the stack's first-boot stand-in plays for the ticket's next instance."""
    requests.post(f"{local_stack['LEOSTREAM_URL']}/_sandbox/first-boot", timeout=5,
                  json={"issue_key": issue_key, "outcome": outcome, **extra}).raise_for_status()


def test_a_failed_first_boot_fails_the_ticket_in_plain_words_and_jira_retry_makes_it_ready(
        local_stack, jira, ec2, broker):
    issue_key = file_request(jira, "standard", "bob@studio.example")
    first_boot(local_stack, issue_key, "failed", cause="the DCV server package could not be installed")
    approve = next(t["id"] for t in jira.get_issue_transitions(issue_key) if t["to"] == "Approved")
    jira.set_issue_status_by_transition_id(issue_key, approve)
    row = wait_for_state(local_stack, issue_key, "failed", "ready")
    assert (row["state"], row["step"]) == ("failed", "wait_bootstrap")
    [comment] = our_comments(jira, issue_key, "failed-wait_bootstrap-")
    assert "first boot: it failed (the DCV server package could not be installed)" in comment["body"]
    assert our_comments(jira, issue_key, "ready/") == []
    assert status(jira, issue_key) == "Failed"
    [first] = instance_states(ec2, issue_key)
    assert live_instances(ec2, issue_key) == []
    disposed = [e["detail"] for e in request_events(local_stack, issue_key) if e["outcome"] == "instance_disposed"]
    assert disposed == [{"instance_id": first, "action": "terminate", "result": "terminated"}]

    retry_in_jira(jira, issue_key)
    assert wait_for_state(local_stack, issue_key, "ready")["state"] == "ready"
    assert_one_desktop(local_stack, jira, ec2, broker, issue_key, "bob@studio.example")
    assert live_instances(ec2, issue_key)[0]["InstanceId"] != first


def test_a_request_stuck_under_a_run_marked_failed_is_taken_over_by_a_forced_manual_run(
        local_stack, jira, ec2, broker, airflow_api, sandbox_faults):
    issue_key = file_request(jira, "standard", "carol@studio.example")
    # Discovery hangs (each poke of the pool waits two minutes): the run is busy when the operator gives up on it.
    sandbox_faults("LEOSTREAM_URL", method="GET", path="/rest/v1/pools/*", latency_ms=120_000, times=None)
    approve = next(t["id"] for t in jira.get_issue_transitions(issue_key) if t["to"] == "Approved")
    jira.set_issue_status_by_transition_id(issue_key, approve)
    wait_until(lambda: ("register_desktop", "done") in [(e["step"], e["outcome"])
                                                        for e in request_events(local_stack, issue_key)],
               RUN_DEADLINE_S, "the desktop's registration", interval_s=2)
    stuck = request_row(local_stack, issue_key)
    assert stuck["state"] == "in_progress"

    airflow_api.patch(f"/dags/vdi_provision/dagRuns/{stuck['owner_run_id']}", {"state": "failed"})
    requests.delete(f"{local_stack['LEOSTREAM_URL']}/_sandbox/faults", timeout=5)
    manual = airflow_api.trigger("vdi_provision", {"issue_key": issue_key, "force": True})
    wait_until(lambda: request_row(local_stack, issue_key)["owner_run_id"] == manual, 120, "the takeover",
               interval_s=1)
    assert wait_for_state(local_stack, issue_key, "ready", "failed")["state"] == "ready"
    assert_one_desktop(local_stack, jira, ec2, broker, issue_key, "carol@studio.example")

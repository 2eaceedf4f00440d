"""The steps of vdi_provision without Airflow: the real PostgreSQL, the Jira and Leostream sandboxes served over
HTTP, moto for EC2, and the clients built from Airflow connections set in the environment, as the tasks build
them. Every step is run again to show that nothing happens twice."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
import requests
import yaml
from airflow.sdk.exceptions import AirflowFailException
from atlassian import Jira

from tests.conftest import at_once, wait_until
from tests.plugins.vdi.conftest import our_comments
from tests.sandbox.jira.conftest import ALICE, API_TOKEN, API_USER
from tests.sandbox.leostream.conftest import REGION, region_image
from vdi import provision
from vdi.broker import LeostreamUserConflict, pool_name_for
from vdi.catalog import DEFAULT_CATALOG_PATH, load_catalog
from vdi.ec2 import TAG_REQUEST, aws_client, instance_name
from vdi.jira import JiraTicket, comment_marker
from vdi.leostream import LeostreamHook
from vdi.request import DesktopRequest, request_id_for
from vdi.states import RequestState, Run
from vdi.steps import Step
from vdi.store import requests as store
from vdi.userdata import desktop_user_data

TRIGGER = "Approved"
APPROVE, MARK_FAILED, RETRY = "11", "41", "81"
WEBHOOK_RUN = Run("delivery-run-1")
DEADLINE_S = 600  # the bootstrap deadline where a test does not wait it out


# --- the catalog (the clients conn, ticket, ec2 and broker are fixtures of tests/plugins/vdi/conftest.py) ---------
@pytest.fixture
def catalog_with(ec2, moto_endpoint, tmp_path):
    """The shipped catalog, moved to the test region with one of moto's images there, each bundle with
    ``overrides``."""
    iam = aws_client("iam")
    try:
        iam.create_instance_profile(InstanceProfileName="vdi-desktop")
    except iam.exceptions.EntityAlreadyExistsException:
        pass

    def build(**overrides):
        data = yaml.safe_load(DEFAULT_CATALOG_PATH.read_text())
        data["region"] = REGION
        for bundle in data["bundles"].values():
            bundle["images"] = {os_family: {REGION: region_image(moto_endpoint)} for os_family in bundle["images"]}
            bundle.update(overrides)
        path = tmp_path / f"catalog-{len(list(tmp_path.glob('catalog-*')))}.yaml"
        path.write_text(yaml.safe_dump(data))
        return load_catalog(path)

    return build


@pytest.fixture
def catalog(catalog_with):
    return catalog_with()


# --- helpers ------------------------------------------------------------------------------------------------
def approved_ticket(jira, bundle: str = "standard") -> str:
    key = jira.create_request(bundle=bundle, user=ALICE)
    jira.transition(key, APPROVE)
    return key


def sandbox_calls(base_url: str, method: str, path: str) -> list[dict]:
    response = requests.get(f"{base_url}/_sandbox/calls", params={"method": method, "path": path}, timeout=5)
    response.raise_for_status()
    return response.json()


def claimed(conn, ticket, key: str, catalog, field_config) -> DesktopRequest:
    """The first steps of a webhook delivery's run, up to that run owning the request."""
    request = DesktopRequest.model_validate(provision.validate(ticket, key, field_config, conn, WEBHOOK_RUN))
    assert provision.dedupe(conn, request, WEBHOOK_RUN, TRIGGER)
    assert provision.persist(conn, ticket, request, WEBHOOK_RUN, catalog, TRIGGER)
    return request


def launched(conn, ec2, request: DesktopRequest, catalog, run: Run = WEBHOOK_RUN,
             bootstrap_deadline_s: float = DEADLINE_S) -> str:
    os_family = catalog.resolve_os(request)
    user_data = desktop_user_data(request, os_family, broker_address="broker.studio.internal", region=catalog.region,
                                  display_protocol=catalog.bundles[request.bundle].leostream.display_protocol)
    return provision.launch(conn, ec2, request, run, catalog, os_family, user_data, bootstrap_deadline_s)


def first_boot(leostream, issue_key: str, outcome: str, **extra) -> None:
    """What the first-boot stand-in plays for the ticket's next instance."""
    requests.post(f"{leostream.url}/_sandbox/first-boot", timeout=5,
                  json={"issue_key": issue_key, "outcome": outcome, **extra}).raise_for_status()


def booted(conn, ec2, request: DesktopRequest, instance_id: str, run: Run = WEBHOOK_RUN,
           deadline_s: float = DEADLINE_S) -> bool:
    """``wait_bootstrap`` poked until it is done (or raises)."""
    return wait_until(lambda: provision.bootstrap_finished(conn, ec2, request, run, instance_id, deadline_s),
                      message="the first boot")


def up_to_ready(conn, ticket, ec2, broker, request: DesktopRequest, catalog, run: Run = WEBHOOK_RUN) -> str:
    """The steps after the claim, each waited for as its sensor would, up to Ready; the instance id."""
    provision.mark_in_progress(conn, ticket, request, run, "linux")
    instance_id = launched(conn, ec2, request, catalog, run)
    wait_until(lambda: provision.instance_ready(conn, ec2, request, run, instance_id), message="the instance")
    booted(conn, ec2, request, instance_id, run)
    registration = provision.register(conn, broker, request, run, catalog, instance_id)
    wait_until(lambda: provision.desktop_discovered(conn, broker, request, run, registration), message="discovery")
    wait_until(lambda: provision.agent_running(conn, broker, request, run, registration), message="the agent")
    provision.finish_ready(conn, ticket, request, run, registration, "broker.studio.internal", instance_id)
    return instance_id


def failed_at(conn, ticket, ec2, catalog, request: DesktopRequest, step: Step, error: BaseException,
              run: Run = WEBHOOK_RUN) -> None:
    """The failure callback after the last retry of ``step``."""
    provision.record_failure(conn, ticket, request.issue_key, run, step, error, f"{run.run_id}-4", ec2=ec2,
                             catalog=catalog)


def instance_state(ec2, instance_id: str) -> str:
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]


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
    provision.mark_in_progress(conn, ticket, request, WEBHOOK_RUN, "linux")
    provision.record_failure(conn, ticket, key, WEBHOOK_RUN, Step.REGISTER_DESKTOP, RuntimeError("broker down"),
                             "delivery-run-1-3")
    assert ticket.status(key) == "Failed"

    # The failure comment is a webhook delivery of its own: it finds the ticket Failed and does not resume ...
    assert provision.validate(ticket, key, field_config, conn, Run("delivery-run-2")) is None
    refused = store.claim(conn, request.model_copy(update={"status": "Failed"}), Run("delivery-run-2"), TRIGGER)
    assert "trigger vdi_provision by hand with issue_key" in refused.reason
    # ... and the run the message asks for, started by hand, resumes it though the ticket is in Failed.
    manual = Run("manual__2026-01-02", manual=True)
    resumed = provision.validate(ticket, key, field_config, conn, manual)
    assert resumed is not None and resumed["status"] == "Failed"
    resumed = DesktopRequest.model_validate(resumed)
    assert provision.dedupe(conn, resumed, manual, TRIGGER)
    assert provision.persist(conn, ticket, resumed, manual, catalog, TRIGGER)
    assert store.get_request(conn, key)["owner_run_id"] == manual.run_id
    provision.mark_in_progress(conn, ticket, resumed, manual, "linux")
    assert ticket.status(key) == "In Progress"


def test_the_run_that_failed_resumes_its_own_claim_when_its_task_is_cleared(conn, jira, ticket, catalog, field_config):
    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    provision.mark_in_progress(conn, ticket, request, WEBHOOK_RUN, "linux")
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
        provision.mark_in_progress(conn, ticket, request, WEBHOOK_RUN, "linux")
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
    request = claimed(conn, ticket, key, catalog, field_config)
    instance_id = launched(conn, ec2, request, catalog)
    assert provision.instance_ready(conn, ec2, request, WEBHOOK_RUN, instance_id) is True
    assert provision.instance_ready(conn, ec2, request, WEBHOOK_RUN, instance_id) is True
    ec2.stop_instances(InstanceIds=[instance_id])
    with pytest.raises(RuntimeError, match=f"instance {instance_id} is stopp"):
        provision.instance_ready(conn, ec2, request, WEBHOOK_RUN, instance_id)


# --- register_desktop and wait_desktop_in_pool --------------------------------------------------------------
def test_register_creates_the_broker_objects_once(conn, jira, ticket, ec2, catalog, broker, field_config):
    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    instance_id = launched(conn, ec2, request, catalog)
    first = provision.register(conn, broker, request, WEBHOOK_RUN, catalog, instance_id)
    wait_for_scan(broker, first["center_id"])
    assert provision.register(conn, broker, request, WEBHOOK_RUN, catalog, instance_id) == first
    assert [p["id"] for p in broker.pools() if p["name"] == pool_name_for(key)] == [first["pool_id"]]
    assert [p["id"] for p in broker.policies() if p["name"] == first["policy_name"]] == [first["policy_id"]]
    assert [a["id"] for a in broker.pool_assignments(first["policy_id"])] == [first["assignment_id"]]
    assert store.get_request(conn, key)["detail"]["leostream"] == first


def test_desktop_discovered_once_the_broker_lists_the_instance_in_its_pool(conn, jira, ticket, ec2, catalog, broker,
                                                                           leostream, field_config):
    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    registration = provision.register(conn, broker, request, WEBHOOK_RUN, catalog, "i-launched-later")
    scans = f"/rest/v1/centers/{registration['center_id']}/scan"
    wait_for_scan(broker, registration["center_id"])
    scans_before = len(sandbox_calls(leostream.url, "POST", scans))
    assert provision.desktop_discovered(conn, broker, request, WEBHOOK_RUN, registration) is False
    assert len(sandbox_calls(leostream.url, "POST", scans)) == scans_before + 1

    launched(conn, ec2, request, catalog)
    wait_for_scan(broker, registration["center_id"])
    leostream.scan(registration["center_id"])
    assert provision.desktop_discovered(conn, broker, request, WEBHOOK_RUN, registration) is True
    assert [vm["name"] for vm in broker.pool(registration["pool_id"])["vms_list"]] == [instance_name(key)]


# --- jira_ready ---------------------------------------------------------------------------------------------
def test_finish_ready_hands_the_desktop_over_once_with_timings(conn, jira, ticket, ec2, catalog, broker, field_config):
    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    provision.mark_in_progress(conn, ticket, request, WEBHOOK_RUN, "linux")
    instance_id = launched(conn, ec2, request, catalog)
    registration = provision.register(conn, broker, request, WEBHOOK_RUN, catalog, instance_id)
    address = LeostreamHook().broker_address()
    provision.finish_ready(conn, ticket, request, WEBHOOK_RUN, registration, address, instance_id)
    with pytest.raises(provision.NotOwner):  # a rerun once the request is ready: settled, nothing happens twice
        provision.finish_ready(conn, ticket, request, WEBHOOK_RUN, registration, address, instance_id)
    assert ticket.status(key) == "Ready"
    comments = our_comments(ticket, key, "ready/")
    assert len(comments) == 1
    assert f"* Broker: {address}" in comments[0] and f"* Desktop: {instance_name(key)} (standard)" in comments[0]
    row = store.get_request(conn, key)
    assert (row["state"], row["step"]) == (RequestState.READY, Step.JIRA_READY)
    ready = [e["detail"] for e in store.events(conn, request.request_id) if e["outcome"] == "ready"]
    assert [d["transitioned"] for d in ready] == [True]
    timings = ready[0]["timings_s"]
    assert set(timings) == {Step.JIRA_IN_PROGRESS, Step.LAUNCH_INSTANCE, Step.REGISTER_DESKTOP}
    assert timings[Step.JIRA_IN_PROGRESS] <= timings[Step.LAUNCH_INSTANCE] <= timings[Step.REGISTER_DESKTOP]
    assert provision.validate(ticket, key, field_config, conn, Run("delivery-run-2")) is None


# --- wait_bootstrap and wait_agent_running: Ready means it works -------------------------------------------
def test_the_bootstrap_wait_ends_when_the_first_boot_reports_done(conn, jira, ticket, ec2, catalog, broker,
                                                                 leostream, field_config):
    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    instance_id = launched(conn, ec2, request, catalog)
    assert booted(conn, ec2, request, instance_id) is True
    assert leostream.tags(instance_id)["vdi:bootstrap"] == "done"
    assert (Step.WAIT_BOOTSTRAP, "done") in [(e["step"], e["outcome"]) for e in store.events(conn, request.request_id)]


def test_a_failed_first_boot_fails_the_request_with_its_cause_in_plain_words_and_no_ready(
        conn, jira, ticket, ec2, catalog, broker, leostream, field_config):
    key = approved_ticket(jira)
    first_boot(leostream, key, "failed", cause="the DCV server package could not be installed")
    request = claimed(conn, ticket, key, catalog, field_config)
    provision.mark_in_progress(conn, ticket, request, WEBHOOK_RUN, "linux")
    instance_id = launched(conn, ec2, request, catalog)
    with pytest.raises(provision.BootstrapFailed) as failed:
        booted(conn, ec2, request, instance_id)
    failed_at(conn, ticket, ec2, catalog, request, Step.WAIT_BOOTSTRAP, failed.value)

    row = store.get_request(conn, key)
    assert (row["state"], row["step"]) == (RequestState.FAILED, Step.WAIT_BOOTSTRAP)
    assert ticket.status(key) == "Failed"
    [comment] = our_comments(ticket, key, "failed-")
    assert comment.startswith("Provisioning stopped while setting up the desktop at its first boot: it failed (the "
                              "DCV server package could not be installed).\nWhat to do: use Retry on this ticket")
    assert our_comments(ticket, key, "ready/") == []
    assert instance_state(ec2, instance_id) in ("shutting-down", "terminated")  # the catalog's default
    [disposed] = [e["detail"] for e in store.events(conn, request.request_id) if e["outcome"] == "instance_disposed"]
    assert disposed == {"instance_id": instance_id, "action": "terminate", "result": "terminated"}


def test_a_first_boot_that_never_reports_fails_once_the_deadline_from_launch_has_passed(
        conn, jira, ticket, ec2, catalog, broker, leostream, field_config):
    key = approved_ticket(jira)
    first_boot(leostream, key, "never")
    request = claimed(conn, ticket, key, catalog, field_config)
    instance_id = launched(conn, ec2, request, catalog)
    assert provision.bootstrap_finished(conn, ec2, request, WEBHOOK_RUN, instance_id, DEADLINE_S) is False
    with pytest.raises(provision.BootstrapTimedOut, match="it did not finish within 2 seconds"):
        booted(conn, ec2, request, instance_id, deadline_s=2)
    assert "vdi:bootstrap" not in leostream.tags(instance_id)


def test_the_broker_must_count_the_desktops_agent_running_before_ready(conn, jira, ticket, ec2, catalog, broker,
                                                                       leostream, field_config):
    key = approved_ticket(jira)
    first_boot(leostream, key, "never")  # no first boot: no agent registers
    request = claimed(conn, ticket, key, catalog, field_config)
    instance_id = launched(conn, ec2, request, catalog)
    registration = provision.register(conn, broker, request, WEBHOOK_RUN, catalog, instance_id)
    wait_until(lambda: provision.desktop_discovered(conn, broker, request, WEBHOOK_RUN, registration))
    scans = f"/rest/v1/centers/{registration['center_id']}/scan"
    wait_for_scan(broker, registration["center_id"])
    scans_before = len(sandbox_calls(leostream.url, "POST", scans))
    assert provision.agent_running(conn, broker, request, WEBHOOK_RUN, registration) is False
    assert len(sandbox_calls(leostream.url, "POST", scans)) == scans_before + 1

    leostream.app.extensions["leostream_broker"].report_agent(instance_id)  # what the agent's first boot does
    assert provision.agent_running(conn, broker, request, WEBHOOK_RUN, registration) is True


# --- retry the Jira way and the Airflow way -----------------------------------------------------------------
def test_a_failed_ticket_approved_again_in_jira_is_provisioned_again_with_exactly_one_live_instance(
        conn, jira, ticket, ec2, catalog, broker, leostream, field_config):
    key = approved_ticket(jira)
    first_boot(leostream, key, "failed")
    request = claimed(conn, ticket, key, catalog, field_config)
    provision.mark_in_progress(conn, ticket, request, WEBHOOK_RUN, "linux")
    first = launched(conn, ec2, request, catalog)
    with pytest.raises(provision.BootstrapFailed) as failed:
        booted(conn, ec2, request, first)
    failed_at(conn, ticket, ec2, catalog, request, Step.WAIT_BOOTSTRAP, failed.value)
    # The failure comment's own delivery finds the ticket Failed: nothing to do, no loop.
    assert provision.validate(ticket, key, field_config, conn, Run("delivery-run-comment")) is None

    jira.transition(key, RETRY)  # the requester's Retry: Failed -> Approved, delivered as a new webhook
    retry = Run("delivery-run-retry")
    again = DesktopRequest.model_validate(provision.validate(ticket, key, field_config, conn, retry))
    assert provision.dedupe(conn, again, retry, TRIGGER)
    assert provision.persist(conn, ticket, again, retry, catalog, TRIGGER)
    second = up_to_ready(conn, ticket, ec2, broker, again, catalog, retry)

    row = store.get_request(conn, key)
    assert (row["state"], row["owner_run_id"], row["instance_id"]) == (RequestState.READY, retry.run_id, second)
    assert second != first
    assert [i["InstanceId"] for i in live_instances(ec2, request)] == [second]
    assert ticket.status(key) == "Ready"
    assert len(our_comments(ticket, key, "ready/")) == 1


def test_a_manual_run_with_force_takes_over_a_request_stuck_under_a_run_that_no_longer_runs(
        conn, jira, ticket, ec2, catalog, broker, field_config):
    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    provision.mark_in_progress(conn, ticket, request, WEBHOOK_RUN, "linux")
    stuck = launched(conn, ec2, request, catalog)
    # The owning run was marked failed in the UI: Airflow no longer runs it, and the request stays in_progress.
    gone = {"is_running": lambda run_id: run_id != WEBHOOK_RUN.run_id}
    assert provision.validate(ticket, key, field_config, conn, Run("manual__1", manual=True, **gone)) is None
    assert provision.validate(ticket, key, field_config, conn, Run("manual__1", manual=True, force=True)) is None

    takeover = Run("manual__2", manual=True, force=True, **gone)
    resumed = DesktopRequest.model_validate(provision.validate(ticket, key, field_config, conn, takeover))
    assert provision.dedupe(conn, resumed, takeover, TRIGGER)
    assert provision.persist(conn, ticket, resumed, takeover, catalog, TRIGGER)
    assert up_to_ready(conn, ticket, ec2, broker, resumed, catalog, takeover) == stuck  # the instance is reused
    assert store.get_request(conn, key)["state"] == RequestState.READY


def test_a_run_whose_request_was_taken_over_changes_nothing_at_any_step(conn, jira, ticket, ec2, catalog, broker,
                                                                       field_config):
    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    instance_id = launched(conn, ec2, request, catalog)
    takeover = Run("manual__2", manual=True, force=True, is_running=lambda run_id: False)
    assert store.claim(conn, request, takeover, TRIGGER).proceed
    events_before = store.events(conn, request.request_id)

    for step in (lambda: provision.mark_in_progress(conn, ticket, request, WEBHOOK_RUN, "linux"),
                 lambda: launched(conn, ec2, request, catalog),
                 lambda: provision.instance_ready(conn, ec2, request, WEBHOOK_RUN, instance_id),
                 lambda: provision.bootstrap_finished(conn, ec2, request, WEBHOOK_RUN, instance_id, DEADLINE_S),
                 lambda: provision.register(conn, broker, request, WEBHOOK_RUN, catalog, instance_id),
                 lambda: provision.finish_ready(conn, ticket, request, WEBHOOK_RUN, {}, "broker", instance_id)):
        with pytest.raises(provision.NotOwner):
            step()
    failed_at(conn, ticket, ec2, catalog, request, Step.REGISTER_DESKTOP, RuntimeError("broker down"))

    row = store.get_request(conn, key)
    assert (row["state"], row["owner_run_id"]) == (RequestState.IN_PROGRESS, takeover.run_id)
    assert store.events(conn, request.request_id) == events_before
    assert ticket.status(key) == "Approved" and ticket.comments(key) == []
    assert instance_state(ec2, instance_id) == "running"
    assert pool_name_for(key) not in {pool["name"] for pool in broker.pools()}


def test_a_run_that_never_claimed_the_ticket_reports_no_failure(conn, jira, ticket, ec2, catalog):
    key = jira.create_request()  # Open: a comment's delivery, say, whose run failed reading the ticket
    provision.record_failure(conn, ticket, key, Run("delivery-run-7"), Step.VALIDATE,
                             requests.HTTPError("503 Service unavailable"), "delivery-run-7-4", ec2=ec2,
                             catalog=catalog)
    assert store.get_request(conn, key) is None
    assert ticket.status(key) == "Open" and ticket.comments(key) == []


# --- EC2: launch generations, stopped instances, disposal ---------------------------------------------------
def test_a_relaunch_after_the_instance_was_terminated_uses_a_new_client_token(conn, jira, ticket, ec2, catalog,
                                                                             field_config):
    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    first = launched(conn, ec2, request, catalog)
    ec2.terminate_instances(InstanceIds=[first])
    second = launched(conn, ec2, request, catalog)
    assert launched(conn, ec2, request, catalog) == second  # a retried launch: no third generation

    assert second != first
    tokens = {i["InstanceId"]: i["ClientToken"]
              for r in ec2.describe_instances(InstanceIds=[first, second])["Reservations"] for i in r["Instances"]}
    assert tokens[first] != tokens[second]
    row = store.get_request(conn, key)
    assert (row["instance_id"], row["launch_generation"]) == (second, 1)
    generations = [e["detail"] for e in store.events(conn, request.request_id) if e["outcome"] == "new_generation"]
    assert [(g["gone_instance_id"], g["state"], g["generation"]) for g in generations] == [(first, "terminated", 1)]


def test_a_relaunch_after_the_instance_was_lost_uses_a_new_client_token(conn, jira, ticket, ec2, catalog,
                                                                       field_config):
    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    store.set_instance(conn, request.request_id, "i-0123456789abcdef0", {})  # EC2 does not know it (any more)
    instance_id = launched(conn, ec2, request, catalog)
    [instance] = live_instances(ec2, request)
    assert instance["InstanceId"] == instance_id
    assert store.get_request(conn, key)["launch_generation"] == 1
    assert instance["ClientToken"].endswith("-g1")


def test_a_stopped_instance_is_started_again_rather_than_replaced(conn, jira, ticket, ec2, catalog, field_config):
    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    instance_id = launched(conn, ec2, request, catalog)
    ec2.stop_instances(InstanceIds=[instance_id])
    wait_until(lambda: instance_state(ec2, instance_id) == "stopped", message="the instance to stop")
    assert launched(conn, ec2, request, catalog) == instance_id
    assert instance_state(ec2, instance_id) in ("pending", "running")
    wait_until(lambda: provision.instance_ready(conn, ec2, request, WEBHOOK_RUN, instance_id))
    launches = [e["detail"] for e in store.events(conn, request.request_id) if e["step"] == Step.LAUNCH_INSTANCE]
    assert [(d["launched_now"], d["started"]) for d in launches] == [(True, None), (False, "started")]
    assert store.get_request(conn, key)["launch_generation"] == 0


def test_an_instance_whose_first_boot_failed_is_replaced_when_the_request_is_retried(
        conn, jira, ticket, ec2, catalog_with, broker, leostream, field_config):
    catalog = catalog_with(on_failure="keep")  # kept for debugging: the retry must not reuse it
    key = approved_ticket(jira)
    first_boot(leostream, key, "failed")
    request = claimed(conn, ticket, key, catalog, field_config)
    first = launched(conn, ec2, request, catalog)
    with pytest.raises(provision.BootstrapFailed) as failed:
        booted(conn, ec2, request, first)
    failed_at(conn, ticket, ec2, catalog, request, Step.WAIT_BOOTSTRAP, failed.value)
    assert instance_state(ec2, first) == "running"

    manual = Run("manual__1", manual=True)
    assert store.claim(conn, request, manual, TRIGGER).proceed
    second = launched(conn, ec2, request, catalog, manual)
    assert second != first
    assert instance_state(ec2, first) in ("shutting-down", "terminated")
    assert [i["InstanceId"] for i in live_instances(ec2, request)] == [second]


def test_an_instance_whose_first_boot_is_overdue_is_replaced_but_one_still_booting_is_kept(
        conn, jira, ticket, ec2, catalog, broker, leostream, field_config):
    key = approved_ticket(jira)
    first_boot(leostream, key, "never")
    request = claimed(conn, ticket, key, catalog, field_config)
    first = launched(conn, ec2, request, catalog)
    assert launched(conn, ec2, request, catalog) == first  # within the deadline: still booting, perhaps
    wait_until(lambda: store.seconds_since_launch(conn, request.request_id, first) > 1, message="a second")
    second = launched(conn, ec2, request, catalog, bootstrap_deadline_s=1)
    assert second != first
    assert [i["InstanceId"] for i in live_instances(ec2, request)] == [second]
    [replaced] = [e["detail"] for e in store.events(conn, request.request_id) if e["outcome"] == "new_generation"]
    assert (replaced["gone_instance_id"], replaced["bootstrap"], replaced["disposed"]) == (first, "overdue",
                                                                                          "terminated")


@pytest.mark.parametrize("action, final_states", [("stop", ("stopping", "stopped")), ("keep", ("running",))])
def test_a_failed_requests_instance_is_disposed_of_as_the_catalog_says(action, final_states, conn, jira, ticket, ec2,
                                                                      catalog_with, field_config):
    catalog = catalog_with(on_failure=action)
    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    instance_id = launched(conn, ec2, request, catalog)
    wait_until(lambda: instance_state(ec2, instance_id) == "running")
    failed_at(conn, ticket, ec2, catalog, request, Step.WAIT_AGENT_RUNNING, TimeoutError())
    assert instance_state(ec2, instance_id) in final_states
    [disposed] = [e["detail"] for e in store.events(conn, request.request_id) if e["outcome"] == "instance_disposed"]
    assert (disposed["action"], disposed["result"]) == (action, {"stop": "stopped", "keep": "kept"}[action])


# --- bounded ------------------------------------------------------------------------------------------------
@pytest.mark.timeout(60)  # fail rather than wait out the hour
def test_a_429_asking_for_an_hour_fails_the_step_within_seconds(conn, jira, ticket, field_config):
    key = approved_ticket(jira)
    requests.post(f"{jira.url}/_sandbox/faults", timeout=5, json={
        "method": "GET", "path": f"/rest/api/2/issue/{key}", "status": 429, "retry_after": 3600, "times": None,
    }).raise_for_status()
    started = time.monotonic()
    with pytest.raises(requests.HTTPError):
        provision.validate(ticket, key, field_config, conn, WEBHOOK_RUN)
    assert time.monotonic() - started < 10


# --- a task's last failure ----------------------------------------------------------------------------------
def test_record_failure_fails_the_request_with_one_plain_comment(conn, jira, ticket, catalog, field_config):
    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    provision.mark_in_progress(conn, ticket, request, WEBHOOK_RUN, "linux")
    error = RuntimeError("login refused: password=s3cr3t-value\n  at line 2")
    for _ in range(2):
        provision.record_failure(conn, ticket, key, WEBHOOK_RUN, Step.REGISTER_DESKTOP, error, "delivery-run-1-3")
    row = store.get_request(conn, key)
    assert (row["state"], row["step"]) == (RequestState.FAILED, Step.REGISTER_DESKTOP)
    assert ticket.status(key) == "Failed"
    comments = our_comments(ticket, key, "failed-")
    assert len(comments) == 1
    assert comments[0].startswith("Provisioning stopped while registering the desktop with Leostream.\n"
                                  "What to do: use Retry on this ticket to try again; if it stops again, contact the "
                                  "platform team (reference: delivery-run-1, step register_desktop).")
    assert "s3cr3t-value" not in comments[0] and "line 2" not in comments[0]
    failed = next(e["detail"] for e in store.events(conn, request.request_id) if e["outcome"] == "failed")
    assert failed["cause"].startswith("RuntimeError: login refused: password=*** at line 2")


def test_record_failure_of_a_run_that_does_not_own_the_request_changes_nothing(conn, jira, ticket, ec2, catalog,
                                                                              broker, field_config):
    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    provision.mark_in_progress(conn, ticket, request, WEBHOOK_RUN, "linux")
    instance_id = launched(conn, ec2, request, catalog)
    registration = provision.register(conn, broker, request, WEBHOOK_RUN, catalog, instance_id)
    provision.finish_ready(conn, ticket, request, WEBHOOK_RUN, registration, "broker.studio.internal", instance_id)
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


def test_a_failure_comment_names_no_aws_resource_or_host_which_the_event_log_keeps(conn, jira, ticket, ec2, catalog,
                                                                                   field_config):
    arn, host = "arn:aws:iam::123456789012:instance-profile/vdi-desktop", "ip-10-0-3-7.eu-west-2.compute.internal"
    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    failed_at(conn, ticket, ec2, catalog, request, Step.LAUNCH_INSTANCE,
              RuntimeError(f"{arn} is not authorized on {host}"))
    manual = Run("manual__1", manual=True)
    assert store.claim(conn, request, manual, TRIGGER).proceed
    failed_at(conn, ticket, ec2, catalog, request, Step.WAIT_BOOTSTRAP,
              provision.BootstrapFailed(f"it failed (no access to {arn} from {host})"), manual)
    comments = our_comments(ticket, key, "failed-")
    assert len(comments) == 2
    for comment in comments:
        assert arn not in comment and "arn:aws" not in comment and host not in comment and "10-0-3-7" not in comment
        assert "contact the platform team" in comment
    assert "it failed (no access to an AWS resource from an internal host)" in comments[1]
    causes = [e["detail"]["cause"] for e in store.events(conn, request.request_id) if e["outcome"] == "failed"]
    assert all(arn in cause and host in cause for cause in causes)


@pytest.mark.parametrize("error, words", [
    (TimeoutError(), "it did not finish in time"),
    (requests.ConnectionError("connection refused by broker.studio.internal:443"),
     "a service it needs could not be reached"),
    (RuntimeError("unexpected answer from vdi-db.cluster-1.eu-west-2.rds.amazonaws.com"), ""),
])
def test_plain_cause_says_what_kind_of_trouble_it_was_and_nothing_internal(error, words):
    assert provision.plain_cause(error) == words


def test_a_permanent_failure_keeps_its_own_words_when_it_reaches_the_callback_wrapped():
    conflict = LeostreamUserConflict("dana@studio.example", "vdi-user-dana@studio.example-0123456789ab")
    try:
        raise AirflowFailException(str(conflict)) from conflict  # as vdi.callbacks.task_outcome stops the retries
    except AirflowFailException as wrapped:
        words = provision.plain_cause(wrapped)
    assert words == str(conflict).rstrip(".")
    assert "dana@studio.example" in words and "Retry" in words


# --- the waits, deferred to the triggerer (vdi.waits) -----------------------------------------------------------
def trigger_events(trigger, limit_s: float = 60) -> list:
    """Every event ``trigger`` yields (it stops after its first), as the triggerer runs it."""
    import asyncio

    async def collect():
        return [event async for event in trigger.run()]

    return asyncio.run(asyncio.wait_for(collect(), limit_s))


@pytest.fixture
def wait_trigger(app_database_url, ec2, broker, monkeypatch):
    """A ``StepTrigger`` for the webhook run, polling every 0.2 s, with the app database from the environment."""
    from vdi import waits

    monkeypatch.setenv("VDI_DATABASE_URL", app_database_url)
    waits._ec2.cache_clear()

    def build(step: Step, request: DesktopRequest, **args):
        return waits.StepTrigger(step.value, request.model_dump(mode="json"), WEBHOOK_RUN.run_id, False, False,
                                 poke_interval_s=0.2, check_timeout_s=30, **args)

    yield build
    waits._ec2.cache_clear()


def test_a_deferred_wait_ends_its_task_from_the_triggerer_once_the_first_boot_reports_done(
        conn, jira, ticket, ec2, catalog, leostream, field_config, wait_trigger):
    from airflow.triggers.base import TaskSuccessEvent

    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    instance_id = launched(conn, ec2, request, catalog)

    [event] = trigger_events(wait_trigger(Step.WAIT_BOOTSTRAP, request, instance_id=instance_id))
    assert isinstance(event, TaskSuccessEvent)  # no second start in a worker
    assert leostream.tags(instance_id)["vdi:bootstrap"] == "done"
    steps = [(e["step"], e["outcome"]) for e in store.events(conn, request.request_id)]
    assert steps.count((Step.WAIT_BOOTSTRAP, "done")) == 1


def test_a_deferred_wait_hands_a_failed_first_boot_back_to_the_worker_with_its_cause(
        conn, jira, ticket, ec2, catalog, leostream, field_config, wait_trigger):
    from airflow.triggers.base import BaseTaskEndEvent

    key = approved_ticket(jira)
    first_boot(leostream, key, "failed", cause="the DCV server package could not be installed")
    request = claimed(conn, ticket, key, catalog, field_config)
    instance_id = launched(conn, ec2, request, catalog)

    [event] = trigger_events(wait_trigger(Step.WAIT_INSTANCE_RUNNING, request, instance_id=instance_id,
                                          then=[Step.WAIT_BOOTSTRAP.value]))
    assert not isinstance(event, BaseTaskEndEvent)  # resumed in a worker, where the failure takes its usual path
    assert event.payload == {"error": "BootstrapFailed: it failed (the DCV server package could not be installed)",
                             "step": Step.WAIT_BOOTSTRAP}

    from vdi.waits import StepWait

    wait = StepWait(step=Step.WAIT_INSTANCE_RUNNING, request=request.model_dump(mode="json"),
                    instance_id=instance_id, poke_interval_s=0.2, wait_timeout_s=60)
    context = {"ti": None, "run_id": WEBHOOK_RUN.run_id, "params": {"delivery_id": "d-1", "force": False}}
    with pytest.raises(AirflowFailException, match="the DCV server package could not be installed") as failed:
        wait.execute_complete(context, event.payload)  # no retry: the failure callback reports it
    assert failed.value.failed_step == Step.WAIT_BOOTSTRAP  # recorded at the first boot, not at the task's id


def test_a_wait_phase_not_over_within_its_bound_hands_back_to_the_worker_which_fails_it_at_that_step(
        conn, jira, ticket, ec2, catalog, leostream, field_config, wait_trigger):
    from vdi.waits import StepWait

    key = approved_ticket(jira)
    first_boot(leostream, key, "never")
    request = claimed(conn, ticket, key, catalog, field_config)
    instance_id = launched(conn, ec2, request, catalog)

    [event] = trigger_events(wait_trigger(Step.WAIT_INSTANCE_RUNNING, request, instance_id=instance_id,
                                          then=[Step.WAIT_BOOTSTRAP.value], phase_timeout_s=1))
    assert event.payload == {"error": "not over after 1 s", "step": Step.WAIT_BOOTSTRAP}
    wait = StepWait(step=Step.WAIT_INSTANCE_RUNNING, request=request.model_dump(mode="json"),
                    instance_id=instance_id, poke_interval_s=0.2, wait_timeout_s=1)
    context = {"ti": None, "run_id": WEBHOOK_RUN.run_id, "params": {"delivery_id": "d-1", "force": False}}
    with pytest.raises(RuntimeError, match="wait_bootstrap stopped: not over after 1 s") as failed:
        wait.execute_complete(context, event.payload)
    assert failed.value.failed_step == Step.WAIT_BOOTSTRAP


def test_deferred_waits_follow_the_desktop_through_the_broker_up_to_its_agent_running(
        conn, jira, ticket, ec2, catalog, broker, leostream, field_config, wait_trigger):
    from airflow.triggers.base import TaskSuccessEvent

    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    instance_id = launched(conn, ec2, request, catalog)
    # One trigger per wait task, through both of its phases.
    [event] = trigger_events(wait_trigger(Step.WAIT_INSTANCE_RUNNING, request, instance_id=instance_id,
                                          then=[Step.WAIT_BOOTSTRAP.value]))
    assert isinstance(event, TaskSuccessEvent)
    registration = provision.register(conn, broker, request, WEBHOOK_RUN, catalog, instance_id)
    [event] = trigger_events(wait_trigger(Step.WAIT_DESKTOP_IN_POOL, request, registration=registration,
                                          then=[Step.WAIT_AGENT_RUNNING.value]))
    assert isinstance(event, TaskSuccessEvent)
    assert broker.pool(registration["pool_id"])["pool_stats"]["total_agent_running"] >= 1
    steps = [(e["step"], e["outcome"]) for e in store.events(conn, request.request_id)]
    assert (Step.WAIT_BOOTSTRAP, "done") in steps and (Step.WAIT_AGENT_RUNNING, "done") in steps


def test_a_wait_that_checks_first_ends_in_its_task_without_a_trigger_when_the_desktop_is_already_there(
        conn, jira, ticket, ec2, catalog, broker, leostream, field_config, wait_trigger):
    from vdi.waits import StepWait

    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    instance_id = launched(conn, ec2, request, catalog)
    booted(conn, ec2, request, instance_id)
    registration = provision.register(conn, broker, request, WEBHOOK_RUN, catalog, instance_id)
    wait_until(lambda: provision.desktop_discovered(conn, broker, request, WEBHOOK_RUN, registration),
               message="discovery")
    wait_until(lambda: broker.pool(registration["pool_id"])["pool_stats"].get("total_agent_running"),
               message="the agent")

    wait = StepWait(step=Step.WAIT_DESKTOP_IN_POOL, request=request.model_dump(mode="json"),
                    registration=registration, poke_interval_s=0.2, wait_timeout_s=60, check_first=True)
    context = {"ti": None, "run_id": WEBHOOK_RUN.run_id, "params": {"delivery_id": "d-1", "force": False}}
    assert wait.execute(context) is None  # no TaskDeferred: both phases were over at the first check
    steps = [(e["step"], e["outcome"]) for e in store.events(conn, request.request_id)]
    assert steps.count((Step.WAIT_AGENT_RUNNING, "done")) == 1


def test_a_deferred_wait_of_a_run_that_lost_its_request_hands_back_to_the_worker_which_skips(
        conn, jira, ticket, ec2, catalog, field_config, wait_trigger):
    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, field_config)
    instance_id = launched(conn, ec2, request, catalog)
    stray = replace(WEBHOOK_RUN, run_id="another-run")
    trigger = wait_trigger(Step.WAIT_INSTANCE_RUNNING, request, instance_id=instance_id)
    trigger.run_id = stray.run_id

    [event] = trigger_events(trigger)
    assert event.payload["error"].startswith("NotOwner: another-run no longer owns")

"""The steps of vdi_deprovision without Airflow: the real PostgreSQL, the Jira and Leostream sandboxes served over
HTTP, moto for EC2, the clients built from Airflow connections as the tasks build them. Desktops are made by
vdi_provision's own steps first; every removal step is run again to show that nothing happens twice."""

from __future__ import annotations

import pytest

from tests.conftest import wait_until
from tests.plugins.vdi.conftest import our_comments
from tests.plugins.vdi.test_provision import (  # noqa: F401 (fixtures)
    WEBHOOK_RUN, approved_ticket, catalog, catalog_with, claimed, instance_state, launched, up_to_ready)
from tests.sandbox.jira.conftest import ALICE, BOB, DANA
from vdi import deprovision, provision
from vdi.broker import pool_name_for
from vdi.identity import policy_name_for
from vdi.provision import NotOwner
from vdi.request import JiraFieldConfig
from vdi.states import RequestState, Run
from vdi.steps import RemovalStep, Step
from vdi.store import removals
from vdi.store import requests as store

REMOVAL_STATUS = "Removal Requested"
REQUEST_TYPE = "Desktop Request"
RETRY_REMOVAL = "71"
REMOVAL_RUN = Run("removal-run-1")
FIELDS = JiraFieldConfig.from_env({})


def removal_ticket(jira, *linked: str, user: str = ALICE) -> str:
    """A Desktop Removal ticket for ``user``, linked on the create screen to the ``linked`` request tickets."""
    body = {"fields": {"project": {"key": "VDI"}, "issuetype": {"name": "Desktop Removal"},
                       "summary": "Take my desktop down", "customfield_10051": {"accountId": user}}}
    if linked:
        body["update"] = {"issuelinks": [{"add": {"type": {"name": "Relates"}, "outwardIssue": {"key": key}}}
                                         for key in linked]}
    response = jira.http.post(f"{jira.url}/rest/api/2/issue", json=body)
    assert response.status_code == 201, response.text
    return response.json()["key"]


def remove(conn, ticket, ec2, broker, catalog, key: str, run: Run = REMOVAL_RUN) -> dict:
    """Every step of a run, each waited for as its sensor would be; the claimed removal."""
    removal = deprovision.claim(conn, ticket, key, run, REMOVAL_STATUS)
    assert removal is not None
    deprovision.resolve(conn, ticket, removal, run, FIELDS, REQUEST_TYPE)
    deprovision.remove_from_broker(conn, broker, removal, run)
    wait_until(lambda: deprovision.instances_stopped(conn, ec2, removal, run, catalog), message="stopped instances")
    deprovision.terminate_instances(conn, ec2, removal, run, catalog)
    deprovision.finish(conn, ticket, removal, run)
    return removal


def registered(conn, ticket, ec2, broker, catalog, key: str, run: Run = WEBHOOK_RUN):
    """A request half-provisioned: claimed, its instance launched and its broker objects made; (request, id)."""
    request = claimed(conn, ticket, key, catalog, FIELDS)
    instance_id = launched(conn, ec2, request, catalog, run)
    provision.register(conn, broker, request, run, catalog, instance_id)
    return request, instance_id


def pools(broker) -> set[str]:
    return {pool["name"] for pool in broker.pools()}


def policy_id(broker, login: str) -> int:
    return next(int(p["id"]) for p in broker.policies() if p["name"] == policy_name_for(login))


# --- removal by link ------------------------------------------------------------------------------------------
def test_a_removal_linked_to_a_ready_desktop_takes_it_down_and_finishes_both_tickets(conn, jira, ticket, ec2, catalog,
                                                                                      broker):
    key = approved_ticket(jira)
    request = claimed(conn, ticket, key, catalog, FIELDS)
    instance_id = up_to_ready(conn, ticket, ec2, broker, request, catalog)
    alice_policy = policy_id(broker, "alice@studio.example")
    removal_key = removal_ticket(jira, key)

    removal = remove(conn, ticket, ec2, broker, catalog, removal_key)

    row = store.get_request(conn, key)
    assert (row["state"], row["removal_key"]) == (RequestState.REMOVED, removal_key)
    assert instance_state(ec2, instance_id) in ("shutting-down", "terminated")
    assert pool_name_for(key) not in pools(broker)
    assert broker.pool_assignments(alice_policy) == []  # the user's policy stays, offering nothing
    assert ticket.status(removal_key) == "Removed" and ticket.status(key) == "Ready"
    assert len(our_comments(ticket, key, f"removed-{removal_key}/")) == 1
    [summary] = our_comments(ticket, removal_key, "removed/")
    assert f"Removed: {key}." in summary
    assert removals.get_removal(conn, removal_key)["state"] == RequestState.REMOVED
    removed = [e for e in store.events(conn, request.request_id) if e["outcome"] == "removed"]
    assert [e["detail"]["instances"][instance_id]["result"] for e in removed] == ["terminated"]

    # Every step again: the claim is refused, the owner's own steps do nothing twice.
    assert deprovision.claim(conn, ticket, removal_key, REMOVAL_RUN, REMOVAL_STATUS) is None
    for step in (lambda: deprovision.remove_from_broker(conn, broker, removal, REMOVAL_RUN),
                 lambda: deprovision.finish(conn, ticket, removal, REMOVAL_RUN)):
        with pytest.raises(NotOwner):
            step()
    assert len(our_comments(ticket, removal_key, "removed/")) == 1


def test_each_step_run_twice_changes_nothing_the_second_time(conn, jira, ticket, ec2, catalog, broker):
    key = approved_ticket(jira)
    request, instance_id = registered(conn, ticket, ec2, broker, catalog, key)
    removal = deprovision.claim(conn, ticket, removal_ticket(jira, key), REMOVAL_RUN, REMOVAL_STATUS)
    assert [deprovision.resolve(conn, ticket, removal, REMOVAL_RUN, FIELDS, REQUEST_TYPE) for _ in range(2)] == [
        [key], [key]]
    first, second = (deprovision.remove_from_broker(conn, broker, removal, REMOVAL_RUN) for _ in range(2))
    assert (first[key]["pool"], len(first[key]["assignments_deleted"])) == ("deleted", 1)
    assert second[key] == {"pool_id": None, "assignments_deleted": [], "pool": "none of ours"}
    for _ in range(2):
        wait_until(lambda: deprovision.instances_stopped(conn, ec2, removal, REMOVAL_RUN, catalog), message="stop")
    first, second = (deprovision.terminate_instances(conn, ec2, removal, REMOVAL_RUN, catalog) for _ in range(2))
    assert first[key][instance_id]["result"] == "terminated" and second[key] == {}
    deprovision.finish(conn, ticket, removal, REMOVAL_RUN)
    holds = [e for e in store.events(conn, request.request_id) if e["outcome"] == "removing"]
    assert len(holds) == 1


# --- removal by user -----------------------------------------------------------------------------------------
def test_a_removal_without_a_link_takes_down_every_live_desktop_of_its_user_and_no_one_elses(conn, jira, ticket,
                                                                                             ec2, catalog, broker):
    halfway, halfway_instance = registered(conn, ticket, ec2, broker, catalog, approved_ticket(jira))
    failed = claimed(conn, ticket, approved_ticket(jira), catalog, FIELDS)
    failed_instance = launched(conn, ec2, failed, catalog)
    provision.record_failure(conn, ticket, failed.issue_key, WEBHOOK_RUN, Step.WAIT_BOOTSTRAP,
                             RuntimeError("boot"), "a-1", ec2=ec2, catalog=catalog_stopping_on_failure(catalog))
    bob_key = jira.create_request(user=BOB, bundle="standard")
    jira.transition(bob_key, "11")
    bob = claimed(conn, ticket, bob_key, catalog, FIELDS)
    bob_instance = launched(conn, ec2, bob, catalog)

    removal_key = removal_ticket(jira)  # no link: Alice's desktops
    remove(conn, ticket, ec2, broker, catalog, removal_key)

    for request, instance_id in ((halfway, halfway_instance), (failed, failed_instance)):
        assert store.get_request(conn, request.issue_key)["state"] == RequestState.REMOVED
        assert instance_state(ec2, instance_id) in ("shutting-down", "terminated")
    assert store.get_request(conn, bob_key)["state"] == RequestState.IN_PROGRESS
    assert instance_state(ec2, bob_instance) in ("pending", "running")
    assert removals.get_removal(conn, removal_key)["targets"] == sorted([halfway.issue_key, failed.issue_key])
    assert ticket.status(removal_key) == "Removed"


def catalog_stopping_on_failure(catalog):
    """The catalog with every bundle's failed instances stopped rather than terminated."""
    return catalog.model_copy(update={"bundles": {name: bundle.model_copy(update={"on_failure": "stop"})
                                                  for name, bundle in catalog.bundles.items()}})


def test_a_user_with_no_desktop_or_a_link_to_a_request_never_provisioned_is_a_clean_finish(conn, jira, ticket, ec2,
                                                                                           catalog, broker):
    never = jira.create_request(user=BOB)  # Open: never approved, so never provisioned
    for removal_key, said in ((removal_ticket(jira, user=BOB), "There was no desktop to remove."),
                              (removal_ticket(jira, never, user=BOB), f"no desktop was ever made for it): {never}")):
        remove(conn, ticket, ec2, broker, catalog, removal_key)
        assert ticket.status(removal_key) == "Removed"
        [summary] = our_comments(ticket, removal_key, "removed/")
        assert said in summary
    assert store.get_request(conn, never) is None


# --- removing twice ------------------------------------------------------------------------------------------
def test_a_second_removal_of_a_removed_desktop_finishes_saying_so(conn, jira, ticket, ec2, catalog, broker):
    key = approved_ticket(jira)
    registered(conn, ticket, ec2, broker, catalog, key)
    remove(conn, ticket, ec2, broker, catalog, removal_ticket(jira, key))
    again = removal_ticket(jira, key)
    remove(conn, ticket, ec2, broker, catalog, again, Run("removal-run-2"))
    assert ticket.status(again) == "Removed"
    [summary] = our_comments(ticket, again, "removed/")
    assert f"Left alone (already removed): {key}." in summary
    assert store.get_request(conn, key)["removal_key"] != again
    # A removed request is never provisioned again by its old approval.
    assert provision.validate(ticket, key, FIELDS, conn, Run("delivery-run-9")) is None


# --- the broker: only what VDI Studios made ------------------------------------------------------------------
def test_broker_objects_someone_else_made_are_left_alone(conn, jira, ticket, ec2, catalog, broker):
    key = approved_ticket(jira)
    request, _ = registered(conn, ticket, ec2, broker, catalog, key)
    pool_id = next(int(p["id"]) for p in broker.pools() if p["name"] == pool_name_for(key))
    # The platform team offers the desktop from a policy of their own too, and keeps a pool named like ours.
    leads = int(broker.create_policy({"name": "studio-leads"})["id"])
    leads_assignment = int(broker.create_pool_assignment(leads, {"pool_id": pool_id})["id"])
    other = approved_ticket(jira)
    lookalike = int(broker.create_pool({"name": pool_name_for(other), "notes": "made by hand", "pool_definition": {
        "restrict_by": "A", "parent_pool_id": 1, "attributes": [
            {"vm_table_field": "name", "condition_type": "eq", "text_to_match": "x"}]}})["id"])

    removal_key = removal_ticket(jira, key, other)
    remove(conn, ticket, ec2, broker, catalog, removal_key)

    assert [int(a["id"]) for a in broker.pool_assignments(leads)] == [leads_assignment]
    assert pool_name_for(key) in pools(broker) and broker.pool(lookalike)["notes"] == "made by hand"
    assert broker.pool_assignments(policy_id(broker, "alice@studio.example")) == []
    broker_done = next(e["detail"] for e in store.events(conn, request.request_id)
                       if e["step"] == RemovalStep.REMOVE_FROM_BROKER)
    assert broker_done["pool"] == "kept: another policy still offers it"
    assert ticket.status(removal_key) == "Removed"


# --- the snapshot option -------------------------------------------------------------------------------------
def test_a_bundle_that_keeps_a_snapshot_gets_one_of_the_stopped_root_volume_before_termination(conn, jira, ticket,
                                                                                               ec2, catalog_with,
                                                                                               broker):
    catalog = catalog_with(snapshot_on_removal=True)
    key = approved_ticket(jira)
    request, instance_id = registered(conn, ticket, ec2, broker, catalog, key)
    [instance] = [i for r in ec2.describe_instances(InstanceIds=[instance_id])["Reservations"] for i in r["Instances"]]
    root = next(m["Ebs"]["VolumeId"] for m in instance["BlockDeviceMappings"]
                if m["DeviceName"] == instance["RootDeviceName"])

    remove(conn, ticket, ec2, broker, catalog, removal_ticket(jira, key))

    [snapshot] = ec2.describe_snapshots(OwnerIds=["self"], Filters=[
        {"Name": "tag:vdi:request", "Values": [str(request.request_id)]}])["Snapshots"]
    assert snapshot["VolumeId"] == root
    assert {t["Key"]: t["Value"] for t in snapshot["Tags"]}[deprovision.TAG_SNAPSHOT_OF] == instance_id
    removed = next(e for e in store.events(conn, request.request_id) if e["outcome"] == "removed")
    assert removed["detail"]["instances"][instance_id]["snapshot_id"] == snapshot["SnapshotId"]
    stops = [e for e in store.events(conn, request.request_id) if e["outcome"] == "stopping"]
    assert len(stops) == 1  # stopped first, then terminated


# --- the owner rule and failures -----------------------------------------------------------------------------
def test_only_the_owning_run_moves_a_removal_and_a_stray_run_changes_nothing(conn, jira, ticket, ec2, catalog, broker):
    key = approved_ticket(jira)
    registered(conn, ticket, ec2, broker, catalog, key)
    removal_key = removal_ticket(jira, key)
    removal = deprovision.claim(conn, ticket, removal_key, REMOVAL_RUN, REMOVAL_STATUS)
    stray = Run("removal-run-stray")
    assert deprovision.claim(conn, ticket, removal_key, stray, REMOVAL_STATUS) is None
    with pytest.raises(NotOwner):
        deprovision.resolve(conn, ticket, removal, stray, FIELDS, REQUEST_TYPE)
    deprovision.record_failure(conn, ticket, removal_key, stray, RemovalStep.RESOLVE, RuntimeError("x"), "s-1")
    assert removals.get_removal(conn, removal_key)["state"] == RequestState.IN_PROGRESS
    assert ticket.status(removal_key) == REMOVAL_STATUS and ticket.comments(removal_key) == []
    # The request's own provisioning run no longer owns it once the removal holds it.
    deprovision.resolve(conn, ticket, removal, REMOVAL_RUN, FIELDS, REQUEST_TYPE)
    assert not store.hold(conn, store.get_request(conn, key)["request_id"], WEBHOOK_RUN, Step.WAIT_AGENT_RUNNING)


def test_a_failed_removal_is_failed_with_a_plain_comment_and_retry_removal_finishes_it(conn, jira, ticket, ec2,
                                                                                      catalog, broker):
    key = approved_ticket(jira)
    _, instance_id = registered(conn, ticket, ec2, broker, catalog, key)
    removal_key = removal_ticket(jira, key)
    removal = deprovision.claim(conn, ticket, removal_key, REMOVAL_RUN, REMOVAL_STATUS)
    deprovision.resolve(conn, ticket, removal, REMOVAL_RUN, FIELDS, REQUEST_TYPE)
    deprovision.record_failure(conn, ticket, removal_key, REMOVAL_RUN, RemovalStep.REMOVE_FROM_BROKER,
                               ConnectionError("http://10.0.0.5:8443 refused"), "removal-run-1-4")
    assert ticket.status(removal_key) == "Failed"
    [comment] = our_comments(ticket, removal_key, f"failed-{RemovalStep.REMOVE_FROM_BROKER}")
    assert "Removal stopped while taking the desktops out of Leostream" in comment
    assert "use Retry Removal" in comment and "10.0.0.5" not in comment
    # The failure's own delivery finds the ticket Failed: no run starts.
    assert deprovision.claim(conn, ticket, removal_key, Run("delivery-2"), REMOVAL_STATUS) is None

    jira.transition(removal_key, RETRY_REMOVAL)
    retry = Run("delivery-3")
    remove(conn, ticket, ec2, broker, catalog, removal_key, retry)
    assert store.get_request(conn, key)["state"] == RequestState.REMOVED
    assert instance_state(ec2, instance_id) in ("shutting-down", "terminated")
    assert ticket.status(removal_key) == "Removed"


def test_a_removal_naming_no_desktop_and_no_findable_user_fails_saying_what_to_do(conn, jira, ticket):
    removal_key = removal_ticket(jira, user=DANA)  # her email is hidden and the removal screen has no login field
    removal = deprovision.claim(conn, ticket, removal_key, REMOVAL_RUN, REMOVAL_STATUS)
    with pytest.raises(deprovision.RemovalInvalid) as invalid:
        deprovision.resolve(conn, ticket, removal, REMOVAL_RUN, FIELDS, REQUEST_TYPE)
    deprovision.record_failure(conn, ticket, removal_key, REMOVAL_RUN, RemovalStep.RESOLVE, invalid.value, "r-1")
    assert ticket.status(removal_key) == "Failed"
    [comment] = our_comments(ticket, removal_key, "failed-resolve")
    assert "link the ticket to the desktop's request ticket" in comment


def test_the_removal_event_log_is_append_only(conn, jira, ticket):
    import psycopg

    removal_key = removal_ticket(jira)
    assert deprovision.claim(conn, ticket, removal_key, REMOVAL_RUN, REMOVAL_STATUS) is not None
    assert [e["outcome"] for e in removals.events(conn, removals.removal_id_for(removal_key))] == ["claimed"]
    for statement in ("UPDATE removal_events SET outcome = 'x'", "DELETE FROM removal_events"):
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute(statement)

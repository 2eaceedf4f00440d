"""Drift between the database, EC2, the broker and Jira: each case fixed (or, where it is only to be reported,
reported) exactly once; a second pass finds nothing new to do; a dry run changes nothing."""

from __future__ import annotations

import uuid

from tests.plugins.vdi.conftest import our_comments
from tests.plugins.vdi.reconcile.conftest import findings, insert_request, request_row
from tests.sandbox.jira.conftest import APPROVE
from vdi.broker import pool_name_for
from vdi.ec2 import instance_name
from vdi.identity import policy_name_for
from vdi.reconcile import drift as drift_part
from vdi.request import request_id_for

START_PROVISIONING = "21"


def tagged(leostream, issue_key: str, request_id: str | None = None) -> str:
    return leostream.launch(instance_name(issue_key), vdi_request=request_id or str(request_id_for(issue_key)),
                            vdi_issue=issue_key)


def run(conn, ec2, broker, ticket, *, dry_run: bool = False, terminate: bool = False, reprovision: bool = False,
        max_fixes: int = 25):
    return drift_part.drift(conn, ec2, broker, ticket, terminate_orphans=terminate, reprovision=reprovision,
                            min_age_s=0, lookback_s=3600, page_size=50, max_fixes=max_fixes, dry_run=dry_run)


def state_of(ec2, instance_id: str) -> str:
    [reservation] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return reservation["Instances"][0]["State"]["Name"]


def test_an_instance_no_live_request_owns_is_reported_once_and_left_running(conn, ec2, broker, ticket, leostream):
    stray = tagged(leostream, "VDI-901", str(uuid.uuid4()))
    removed = tagged(leostream, "VDI-902")
    insert_request(conn, "VDI-902", "removed", instance_id=removed)
    mine = tagged(leostream, "VDI-903")
    insert_request(conn, "VDI-903", "ready", instance_id=mine)

    first, _ = run(conn, ec2, broker, ticket)
    second, _ = run(conn, ec2, broker, ticket)

    counts = first["orphan_instance"]
    assert (counts["found"], counts["new"], counts["reported"], counts["fixed"]) == (2, 2, 2, 0)
    assert (second["orphan_instance"]["found"], second["orphan_instance"]["new"]) == (2, 0)
    assert {state_of(ec2, i) for i in (stray, removed, mine)} == {"running"}
    assert [(kind, subject, action) for kind, subject, action, _ in findings(conn)] == sorted(
        [("orphan_instance", stray, "reported"), ("orphan_instance", removed, "reported")])


def test_an_orphan_instance_is_terminated_when_configured_and_the_next_pass_finds_nothing(
        conn, ec2, broker, ticket, leostream):
    stray = tagged(leostream, "VDI-904", str(uuid.uuid4()))

    first, _ = run(conn, ec2, broker, ticket, terminate=True)
    second, _ = run(conn, ec2, broker, ticket, terminate=True)

    assert first["orphan_instance"]["fixed"] == 1
    assert state_of(ec2, stray) in ("shutting-down", "terminated")
    assert second["orphan_instance"]["found"] == 0
    assert findings(conn) == [("orphan_instance", stray, "terminated", False)]


def test_a_ready_desktop_whose_instance_is_gone_is_marked_failed_and_its_requester_told_once(
        conn, ec2, broker, ticket, jira, leostream):
    key = jira.create_request()
    jira.transition(key, APPROVE)
    jira.transition(key, START_PROVISIONING)
    jira.transition(key, "31")  # Mark Ready
    gone = tagged(leostream, key)
    ec2.terminate_instances(InstanceIds=[gone])
    insert_request(conn, key, "ready", instance_id=gone, owner="run-1", step="jira_ready")

    first, again = run(conn, ec2, broker, ticket, reprovision=True)
    second, again_2 = run(conn, ec2, broker, ticket, reprovision=True)

    assert first["desktop_lost"]["fixed"] == 1
    assert again == [{"issue_key": key, "instance_id": gone}]
    row = request_row(conn, key)
    assert (row["state"], row["detail"]["failure"]["ticket_failed"]) == ("failed", False)
    [comment] = our_comments(ticket, key, f"desktop-lost-{gone}")
    assert "no longer available" in comment and "removed outside VDI Studios" in comment
    assert gone not in comment.split("_vdi-studios")[0]  # plain words: no instance id
    assert second["desktop_lost"]["found"] == 0 and again_2 == []
    assert second["ticket_status"]["found"] == 0  # a failed request in Ready is expected after this


def test_a_stopped_desktop_is_told_without_reprovisioning_unless_configured(conn, ec2, broker, ticket, jira,
                                                                            leostream):
    key = jira.create_request()
    stopped = tagged(leostream, key)
    ec2.stop_instances(InstanceIds=[stopped])
    insert_request(conn, key, "ready", instance_id=stopped)

    summary, again = run(conn, ec2, broker, ticket)

    assert summary["desktop_lost"]["fixed"] == 1 and again == []
    [comment] = our_comments(ticket, key, f"desktop-lost-{stopped}")
    assert "stopped outside VDI Studios" in comment and "Contact the platform team" in comment


def make_pool(broker, issue_key: str, notes: str, user: str | None) -> int:
    pool_id = int(broker.create_pool({"name": pool_name_for(issue_key), "notes": notes, "pool_definition": {
        "restrict_by": "A", "parent_pool_id": 1, "pool_attribute_join": "A",
        "attributes": [{"vm_table_field": "name", "condition_type": "eq",
                        "text_to_match": instance_name(issue_key)}]}})["id"])
    if user:
        policy_id = int(broker.create_policy({"name": policy_name_for(user), "notes": ""})["id"])
        broker.create_pool_assignment(policy_id, {"pool_id": pool_id, "offer_quantity": 1})
    return pool_id


def test_a_pool_the_product_made_for_a_desktop_that_is_gone_is_removed_with_its_assignment(conn, ec2, broker,
                                                                                             ticket):
    orphan = make_pool(broker, "VDI-911", "VDI Studios VDI-911", "alice")
    insert_request(conn, "VDI-911", "rejected", user="alice")
    foreign = make_pool(broker, "VDI-912", "made by hand", None)
    insert_request(conn, "VDI-912", "removed", user="bob")
    kept = make_pool(broker, "VDI-913", "VDI Studios VDI-913", None)
    insert_request(conn, "VDI-913", "failed", user="carol")

    first, _ = run(conn, ec2, broker, ticket)
    second, _ = run(conn, ec2, broker, ticket)

    assert (first["orphan_broker_pool"]["found"], first["orphan_broker_pool"]["fixed"]) == (2, 1)
    pools = {p["id"] for p in broker.pools()}
    assert orphan not in pools and {foreign, kept} <= pools
    policy = next(p for p in broker.policies() if p["name"] == policy_name_for("alice"))
    assert broker.pool_assignments(int(policy["id"])) == []
    assert (second["orphan_broker_pool"]["found"], second["orphan_broker_pool"]["new"]) == (1, 0)


def test_a_ticket_whose_status_disagrees_with_its_ready_request_is_moved_once(conn, ec2, broker, ticket, jira,
                                                                                leostream):
    key = jira.create_request()
    jira.transition(key, APPROVE)
    jira.transition(key, START_PROVISIONING)
    insert_request(conn, key, "ready", instance_id=tagged(leostream, key))

    first, _ = run(conn, ec2, broker, ticket)
    second, _ = run(conn, ec2, broker, ticket)

    assert first["ticket_status"]["fixed"] == 1 and ticket.status(key) == "Ready"
    assert second["ticket_status"]["found"] == 0


def test_a_dry_run_changes_nothing_anywhere(conn, ec2, broker, ticket, jira, leostream):
    stray = tagged(leostream, "VDI-921", str(uuid.uuid4()))
    key = jira.create_request()
    gone = tagged(leostream, key)
    ec2.terminate_instances(InstanceIds=[gone])
    insert_request(conn, key, "ready", instance_id=gone)
    pool = make_pool(broker, "VDI-922", "VDI Studios VDI-922", "alice")
    insert_request(conn, "VDI-922", "rejected", user="alice")
    comments_before = ticket.comments(key)

    summary, again = run(conn, ec2, broker, ticket, dry_run=True, terminate=True, reprovision=True)

    assert summary["orphan_instance"]["would_fix"] == 1 and summary["desktop_lost"]["would_fix"] == 1
    assert summary["orphan_broker_pool"]["would_fix"] == 1 and again == []
    assert state_of(ec2, stray) == "running"
    assert request_row(conn, key)["state"] == "ready"
    assert pool in {p["id"] for p in broker.pools()}
    assert ticket.comments(key) == comments_before
    assert findings(conn) == []


def test_fixes_are_capped_per_run(conn, ec2, broker, ticket, leostream):
    strays = [tagged(leostream, f"VDI-93{n}", str(uuid.uuid4())) for n in range(3)]

    first, _ = run(conn, ec2, broker, ticket, terminate=True, max_fixes=2)
    second, _ = run(conn, ec2, broker, ticket, terminate=True, max_fixes=2)

    assert (first["orphan_instance"]["fixed"], first["orphan_instance"]["deferred"]) == (2, 1)
    assert (second["orphan_instance"]["found"], second["orphan_instance"]["fixed"]) == (1, 1)
    assert all(state_of(ec2, i) in ("shutting-down", "terminated") for i in strays)

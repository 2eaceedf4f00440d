"""Stuck requests: one in progress past its deadline whose run is gone fails as its run would have failed it
(ticket to Failed, one plain comment), once; one whose run still runs, or one being removed, is reported."""

from __future__ import annotations

from tests.plugins.vdi.conftest import our_comments
from tests.plugins.vdi.reconcile.conftest import findings, insert_request, request_row
from tests.sandbox.jira.conftest import APPROVE
from vdi.reconcile.stuck import stuck

START_PROVISIONING = "21"
HOUR = 3600


def run(conn, ticket, ec2, running=(), dry_run: bool = False):
    return stuck(conn, ticket, ec2, None, lambda run_id: run_id in running, in_progress_s=HOUR,
                 removing_s=HOUR, max_fixes=25, dry_run=dry_run)


def in_progress_ticket(jira) -> str:
    key = jira.create_request()
    jira.transition(key, APPROVE)
    jira.transition(key, START_PROVISIONING)
    return key


def test_a_request_in_progress_past_its_deadline_under_a_run_that_is_gone_fails_once_with_a_plain_comment(
        conn, jira, ticket, ec2):
    key = in_progress_ticket(jira)
    insert_request(conn, key, "in_progress", owner="run-gone", step="wait_bootstrap", unchanged_s=2 * HOUR)

    first = run(conn, ticket, ec2)
    second = run(conn, ticket, ec2)

    assert (first["found"], first["fixed"]) == (1, 1)
    row = request_row(conn, key)
    assert (row["state"], row["step"], row["detail"]["failure"]["ticket_failed"]) == ("failed", "wait_bootstrap",
                                                                                      True)
    assert ticket.status(key) == "Failed"
    [comment] = our_comments(ticket, key, "failed-")
    assert comment.startswith("Provisioning stopped while setting up the desktop at its first boot: "
                              "it did not finish in time.")
    assert "run-gone" in comment  # the reference the requester quotes; no host, no trace
    assert second["found"] == 0


def test_one_whose_run_still_runs_or_that_is_young_or_removing_is_left_alone(conn, jira, ticket, ec2):
    running = in_progress_ticket(jira)
    insert_request(conn, running, "in_progress", owner="run-alive", step="wait_bootstrap", unchanged_s=2 * HOUR)
    young = in_progress_ticket(jira)
    insert_request(conn, young, "in_progress", owner="run-young", step="wait_bootstrap", unchanged_s=60)
    insert_request(conn, "VDI-950", "removing", owner="removal-run", step="terminate", unchanged_s=2 * HOUR)

    first = run(conn, ticket, ec2, running={"run-alive"})
    second = run(conn, ticket, ec2, running={"run-alive"})

    assert (first["found"], first["new"], first["reported"], first["fixed"]) == (2, 2, 2, 0)
    assert (second["found"], second["new"]) == (2, 0)
    assert {request_row(conn, k)["state"] for k in (running, young)} == {"in_progress"}
    assert {f[:2] for f in findings(conn)} == {("stuck_request", "VDI-950"), ("stuck_request", running)}


def test_a_dry_run_fails_nothing(conn, jira, ticket, ec2):
    key = in_progress_ticket(jira)
    insert_request(conn, key, "in_progress", owner="run-gone", step="launch_instance", unchanged_s=2 * HOUR)

    summary = run(conn, ticket, ec2, dry_run=True)

    assert summary["would_fix"] == 1
    assert request_row(conn, key)["state"] == "in_progress" and ticket.status(key) == "In Progress"
    assert findings(conn) == []

"""Lost webhooks: a ticket in a routed status that no run took up becomes one delivery, recorded as the bridge
records a webhook, with an id that a second reconcile derives again (and so records nothing new)."""

from __future__ import annotations

import json

from tests.plugins.vdi.reconcile.conftest import findings, insert_request
from tests.sandbox.jira.conftest import APPROVE, MARK_FAILED, RETRY
from vdi.reconcile.lost_webhooks import bridge_router, delivery_id_for, lost_webhooks
from webhook_bridge.events import dag_run_id

ROUTES = [{"moved_to": ["Approved"], "dag_id": "vdi_provision"},
          {"moved_to": ["Removal Requested"], "issue_types": ["Desktop Removal"], "dag_id": "vdi_deprovision"}]


def reconcile(conn, ticket, *, dry_run: bool = False, max_fixes: int = 25, lost_after_s: float = 0) -> dict:
    router = bridge_router({"BRIDGE_ROUTES": json.dumps(ROUTES)})
    return lost_webhooks(conn, ticket, router, lookback_s=3600, lost_after_s=lost_after_s, trigger_status="Approved",
                         page_size=2, max_fixes=max_fixes, dry_run=dry_run)


def recorded(conn) -> list[tuple]:
    return conn.execute("SELECT delivery_id, issue_key, status, dag_id, dag_run_id, event FROM deliveries"
                        " ORDER BY issue_key").fetchall()


def test_an_approved_ticket_without_a_request_becomes_one_pending_delivery_with_a_deterministic_id(
        conn, jira, ticket):
    key = jira.create_request()
    jira.transition(key, APPROVE)
    updated = ticket.issue(key)["fields"]["updated"]

    summary = reconcile(conn, ticket)

    delivery_id = delivery_id_for(key, "Approved", updated)
    assert recorded(conn) == [(delivery_id, key, "pending", "vdi_provision", dag_run_id(key, delivery_id),
                               "jira:issue_updated")]
    assert (summary["found"], summary["new"], summary["fixed"]) == (1, 1, 1)
    again = reconcile(conn, ticket)
    assert (again["found"], again["fixed"]) == (0, 0)
    assert len(recorded(conn)) == 1


def test_a_dry_run_records_nothing_and_says_what_it_would_do(conn, jira, ticket):
    key = jira.create_request()
    jira.transition(key, APPROVE)

    summary = reconcile(conn, ticket, dry_run=True)

    assert (summary["found"], summary["new"], summary["would_fix"], summary["fixed"]) == (1, 1, 1, 0)
    assert recorded(conn) == [] and findings(conn) == []


def test_tickets_a_run_took_up_or_that_wait_elsewhere_are_not_lost(conn, jira, ticket):
    in_progress = jira.create_request()
    jira.transition(in_progress, APPROVE)
    insert_request(conn, in_progress, "in_progress", owner="some-run")
    jira.create_request()  # still Open: nothing routes it

    summary = reconcile(conn, ticket)

    assert summary["tickets_searched"] == 1 and summary["found"] == 0
    assert recorded(conn) == []


def test_a_retry_whose_webhook_was_lost_is_found_but_a_failure_not_retried_is_not(conn, jira, ticket):
    retried, waiting = jira.create_request(), jira.create_request()
    for key in (retried, waiting):
        jira.transition(key, APPROVE)
        jira.transition(key, MARK_FAILED)
        insert_request(conn, key, "failed", owner="run-1", step="launch_instance",
                       detail={"failure": {"step": "launch_instance", "ticket_failed": True}})
    jira.transition(retried, RETRY)

    reconcile(conn, ticket)

    assert [row[1] for row in recorded(conn)] == [retried]


def test_a_removal_ticket_goes_to_its_route_and_a_delivery_after_its_last_update_means_it_was_not_lost(
        conn, jira, ticket):
    lost = jira.create_request(summary="Remove my desktop", issuetype="Desktop Removal")
    arrived = jira.create_request(summary="Remove that one", issuetype="Desktop Removal")
    conn.execute("INSERT INTO deliveries (delivery_id, event, issue_key, status, payload, dag_id, dag_run_id)"
                 " VALUES ('from-jira', 'jira:issue_created', %s, 'dispatched', '{}', 'vdi_deprovision', 'r')",
                 (arrived,))

    reconcile(conn, ticket)

    assert [(row[1], row[3]) for row in recorded(conn) if row[0] != "from-jira"] == [(lost, "vdi_deprovision")]


def test_fixes_beyond_the_cap_wait_for_the_next_run_and_each_ticket_is_reported_once(conn, jira, ticket, caplog):
    keys = [jira.create_request() for _ in range(3)]
    for key in keys:
        jira.transition(key, APPROVE)

    first = reconcile(conn, ticket, max_fixes=2)
    second = reconcile(conn, ticket, max_fixes=2)
    third = reconcile(conn, ticket, max_fixes=2)

    assert (first["found"], first["new"], first["fixed"], first["deferred"]) == (3, 3, 2, 1)
    assert (second["found"], second["new"], second["fixed"]) == (1, 0, 1)
    assert third["found"] == 0
    assert sorted(row[1] for row in recorded(conn)) == sorted(keys)
    assert sum("reconcile lost_webhook" in r.getMessage() and "recorded" not in r.getMessage()
               for r in caplog.records) == 3


def test_a_ticket_updated_within_the_lost_after_window_is_left_for_its_webhook(conn, jira, ticket):
    key = jira.create_request()
    jira.transition(key, APPROVE)

    summary = reconcile(conn, ticket, lost_after_s=600)

    assert summary["found"] == 0 and recorded(conn) == []

"""The reconcile's part for deliveries (``vdi.reconcile.deliveries``) against a real PostgreSQL: old pending ones
dispatched again (through a running relay, or handed to the reconcile's own triggers), failed ones requeued up
to the cap then dead-lettered, old ones pruned; a dry run changes nothing."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from tests.plugins.vdi.store.test_deliveries import channels_until_marker, listener  # noqa: F401 (fixture)
from vdi import settings
from vdi.reconcile.deliveries import DeliveryPolicy, reconcile_deliveries
from vdi.states import DeliveryStatus
from vdi.store import deliveries

POLICY = DeliveryPolicy(redispatch_after_s=600, requeue_max=2, max_fixes=25)


def record(conn, delivery_id: str, *, received: str = "0 seconds", next_attempt: str = "0 seconds",
           status: DeliveryStatus = DeliveryStatus.PENDING, note: str | None = None) -> None:
    """A delivery as the bridge records it, received ``received`` ago, due ``next_attempt`` from now."""
    routed = status is not DeliveryStatus.IGNORED
    issue = f"VDI-{delivery_id}"
    deliveries.record(conn, deliveries.NewDelivery(
        delivery_id, False, "jira:issue_updated", issue, {}, DeliveryStatus.PENDING if routed else status,
        reason=None if routed else "no route", dag_id="vdi_provision" if routed else None,
        dag_run_id=f"{issue}__jira__{delivery_id}" if routed else None, note=note))
    if status is DeliveryStatus.FAILED:
        deliveries.mark_failed(conn, delivery_id, "HTTP 400: Dag with dag_id: 'vdi_provision' has import errors")
    elif status is DeliveryStatus.DISPATCHED:
        deliveries.mark_dispatched(conn, [delivery_id])
    conn.execute("UPDATE deliveries SET received_at = now() - %s::interval, next_attempt_at = now() + %s::interval"
                 " WHERE delivery_id = %s", (received, next_attempt, delivery_id))


def table(conn) -> list[tuple]:
    return conn.execute("SELECT delivery_id, status, reason, attempts, requeues, next_attempt_at, last_error"
                        " FROM deliveries ORDER BY delivery_id").fetchall()


def status_of(conn) -> dict[str, str]:
    return dict(conn.execute("SELECT delivery_id, status FROM deliveries").fetchall())


def relay_beats(conn) -> None:
    deliveries.relay_beat(conn, "relay-host:1", {})


def test_with_a_relay_running_old_pending_deliveries_are_made_due_for_it(conn):
    relay_beats(conn)
    record(conn, "old", received="20 minutes", next_attempt="1 minute")
    record(conn, "young", received="1 minute", next_attempt="1 minute")
    result = reconcile_deliveries(conn, dry_run=False, policy=POLICY)
    assert result["relay_running"] is True and result["triggers"] == []
    assert (result["redispatched"], result["to_trigger"], result["deferred"]) == (1, 0, 0)
    assert [c.delivery_id for c in deliveries.claim_due(conn, 10)] == ["old"]


def test_with_no_relay_running_due_pending_deliveries_are_handed_to_the_reconciles_triggers_once(conn):
    record(conn, "old", received="20 minutes", next_attempt="-1 minute", note="VDI-old moved to Approved in Jira")
    record(conn, "young", received="1 minute")
    record(conn, "leased", received="1 hour", next_attempt="5 minutes")  # a trigger is in its lease or backoff
    result = reconcile_deliveries(conn, dry_run=False, policy=POLICY)
    assert result["relay_running"] is False and result["to_trigger"] == 2
    assert result["triggers"] == [
        {"trigger_dag_id": "vdi_provision", "trigger_run_id": "VDI-old__jira__old",
         "conf": {"delivery_id": "old", "issue_key": "VDI-old", "event": "jira:issue_updated"},
         "note": "VDI-old moved to Approved in Jira"},
        {"trigger_dag_id": "vdi_provision", "trigger_run_id": "VDI-young__jira__young",
         "conf": {"delivery_id": "young", "issue_key": "VDI-young", "event": "jira:issue_updated"}}]
    # Leased: the next run does not trigger them again; they stay pending until a relay gets Airflow's 409.
    assert reconcile_deliveries(conn, dry_run=False, policy=POLICY)["triggers"] == []
    assert set(status_of(conn).values()) == {"pending"}


def test_each_kind_of_fix_is_capped_per_run_and_the_rest_is_left_for_the_next(conn):
    for n in range(5):
        record(conn, f"old-{n}", received="1 hour", next_attempt=f"-{5 - n} minutes")
    for n in range(3):
        record(conn, f"failed-{n}", received="1 hour", status=DeliveryStatus.FAILED)
    policy = DeliveryPolicy(redispatch_after_s=600, requeue_max=2, max_fixes=2)
    first = reconcile_deliveries(conn, dry_run=False, policy=policy)
    assert [t["trigger_run_id"] for t in first["triggers"]] == ["VDI-old-0__jira__old-0", "VDI-old-1__jira__old-1"]
    # Left: three old pending, the two requeued just now (pending again, and old), one failed.
    assert (first["to_trigger"], first["requeued"], first["deferred"]) == (2, 2, 3 + 2 + 1)
    second = reconcile_deliveries(conn, dry_run=False, policy=policy)
    assert [t["trigger_run_id"] for t in second["triggers"]] == ["VDI-old-2__jira__old-2", "VDI-old-3__jira__old-3"]
    assert second["requeued"] == 1


def test_a_failed_delivery_is_requeued_up_to_the_cap_then_dead_lettered_with_one_log_line(conn, caplog):
    relay_beats(conn)
    record(conn, "refused", received="2 hours", status=DeliveryStatus.FAILED)
    caplog.set_level(logging.INFO, logger="vdi.reconcile.deliveries")
    for requeue in (1, 2):
        assert reconcile_deliveries(conn, dry_run=False, policy=POLICY)["requeued"] == 1
        assert status_of(conn) == {"refused": "pending"}
        [claimed] = deliveries.claim_due(conn)  # the relay tries, and Airflow refuses again
        deliveries.mark_failed(conn, claimed.delivery_id, "HTTP 400: still broken")
    result = reconcile_deliveries(conn, dry_run=False, policy=POLICY)
    assert (result["requeued"], result["dead_lettered"]) == (0, 1)
    [row] = table(conn)
    assert row[1:5] == ("dead_lettered", "refused by Airflow after 2 requeues", 3, 2)
    assert reconcile_deliveries(conn, dry_run=False, policy=POLICY)["dead_lettered"] == 0
    lines = [r for r in caplog.records if "dead-lettered" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert "delivery=refused" in lines[0].getMessage() and "still broken" in lines[0].getMessage()
    assert deliveries.backlog(conn).dead_lettered == 1
    assert not deliveries.requeue(conn, "refused") and "dead-lettered" in deliveries.requeue_refusal(conn, "refused")


def test_old_deliveries_are_pruned_by_retention_ignored_ones_sooner(conn):
    record(conn, "done-old", received="31 days", status=DeliveryStatus.DISPATCHED)
    record(conn, "done-week", received="7 days", status=DeliveryStatus.DISPATCHED)
    record(conn, "ignored-week", received="7 days", status=DeliveryStatus.IGNORED)
    record(conn, "ignored-today", received="1 hour", status=DeliveryStatus.IGNORED)
    record(conn, "pending-old", received="40 days", next_attempt="1 minute")
    result = reconcile_deliveries(conn, dry_run=False, policy=POLICY)
    assert result["pruned"] == 2
    assert sorted(status_of(conn)) == ["done-week", "ignored-today", "pending-old"]


def test_a_dry_run_changes_nothing_and_counts_what_the_real_run_then_does(conn, listener):
    record(conn, "old", received="20 minutes")
    record(conn, "refused", received="1 hour", status=DeliveryStatus.FAILED)
    record(conn, "spent", received="1 hour", status=DeliveryStatus.FAILED)
    conn.execute("UPDATE deliveries SET requeues = 2 WHERE delivery_id = 'spent'")
    record(conn, "ignored-old", received="4 days", status=DeliveryStatus.IGNORED)
    before = table(conn)
    channels_until_marker(conn, listener)
    dry = reconcile_deliveries(conn, dry_run=True, policy=POLICY)
    assert table(conn) == before
    assert channels_until_marker(conn, listener) == ["marker"]  # no relay was woken either
    assert dry["triggers"] == [] and dry["dry_run"] is True
    real = reconcile_deliveries(conn, dry_run=False, policy=POLICY)
    counts = ("redispatched", "to_trigger", "requeued", "dead_lettered", "pruned", "deferred")
    assert {k: dry[k] for k in counts} == {k: real[k] for k in counts} == {
        "redispatched": 0, "to_trigger": 1, "requeued": 1, "dead_lettered": 1, "pruned": 1, "deferred": 0}


def test_a_second_run_finds_nothing_to_do(conn):
    relay_beats(conn)
    record(conn, "old", received="20 minutes", next_attempt="5 minutes")
    record(conn, "spent", received="1 hour", status=DeliveryStatus.FAILED)
    conn.execute("UPDATE deliveries SET requeues = 2")
    record(conn, "ignored-old", received="4 days", status=DeliveryStatus.IGNORED)
    reconcile_deliveries(conn, dry_run=False, policy=POLICY)
    again = reconcile_deliveries(conn, dry_run=False, policy=POLICY)
    assert {k: v for k, v in again.items() if isinstance(v, int) and not isinstance(v, bool) and v} == {}


def test_the_policy_comes_from_the_settings_and_refuses_a_retention_under_a_day():
    policy = DeliveryPolicy.from_settings(settings.load({"VDI_DELIVERY_REQUEUE_MAX": "5",
                                                        "VDI_RECONCILE_MAX_FIXES": "7"}))
    assert policy == DeliveryPolicy(redispatch_after_s=600, requeue_max=5, max_fixes=7,
                                    retention=timedelta(days=30), ignored_retention=timedelta(days=3),
                                    prune_limit=10_000)
    with pytest.raises(ValueError, match="at least a day"):
        DeliveryPolicy(ignored_retention=timedelta(hours=12))
    with pytest.raises(ValueError, match="invalid delivery policy"):
        DeliveryPolicy(requeue_max=-1)


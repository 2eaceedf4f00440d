"""vdi.store.deliveries (the bridge's and the relay's SQL) against a real PostgreSQL."""

import psycopg
import pytest

from vdi.states import DeliveryStatus
from vdi.store import deliveries


def new(delivery_id: str, status=DeliveryStatus.PENDING) -> deliveries.NewDelivery:
    pending = status is DeliveryStatus.PENDING
    return deliveries.NewDelivery(delivery_id, False, "jira:issue_created", "VDI-1", {"k": delivery_id}, status,
                                  reason=None if pending else "no route", dag_id="vdi_provision" if pending else None,
                                  dag_run_id=f"jira__{delivery_id}" if pending else None)


def test_record_is_idempotent(app_database_url):
    with psycopg.connect(app_database_url, autocommit=True) as conn:
        assert deliveries.record(conn, new("a")) is True
        assert deliveries.record(conn, new("a")) is False
        assert deliveries.get_status(conn, "a") is DeliveryStatus.PENDING
        assert deliveries.get_status(conn, "missing") is None


def test_claims_skip_rows_another_transaction_holds(app_database_url):
    with psycopg.connect(app_database_url, autocommit=True) as setup:
        for delivery_id in ("a", "b"):
            deliveries.record(setup, new(delivery_id))
        deliveries.record(setup, new("ignored", DeliveryStatus.IGNORED))
    with (psycopg.connect(app_database_url) as first, psycopg.connect(app_database_url) as second,
          psycopg.connect(app_database_url) as third):
        [held] = deliveries.claim_due(first)
        assert held.dag_run_id == f"jira__{held.delivery_id}"
        [other] = deliveries.claim_due(second, limit=5)
        assert other.delivery_id != held.delivery_id
        assert deliveries.claim_due(third, limit=5) == []
        first.rollback()
        assert [claimed.delivery_id for claimed in deliveries.claim_due(third, limit=5)] == [held.delivery_id]


def test_retry_dispatch_fail_requeue_and_backlog(app_database_url):
    with psycopg.connect(app_database_url, autocommit=True) as conn:
        for delivery_id in ("a", "b", "c"):
            deliveries.record(conn, new(delivery_id))
        assert deliveries.backlog(conn).pending == 3
        deliveries.mark_retry(conn, "a", "HTTP 503", 3600)
        deliveries.mark_dispatched(conn, ["b"])
        deliveries.mark_failed(conn, "c", "HTTP 400: bad conf")
        assert deliveries.claim_due(conn) == []  # a is not due, b and c are no longer pending
        assert deliveries.backlog(conn).pending == 1
        assert conn.execute("SELECT attempts, last_error FROM deliveries WHERE delivery_id = 'a'").fetchone() == (1, "HTTP 503")
        assert deliveries.get_status(conn, "c") is DeliveryStatus.FAILED
        assert deliveries.requeue(conn, "c") and [d.delivery_id for d in deliveries.claim_due(conn)] == ["c"]
        assert not deliveries.requeue(conn, "b")
        empty = deliveries.backlog(conn)
        assert empty.oldest_pending_age_s >= 0


def test_record_many_reports_only_new_ids(app_database_url):
    with psycopg.connect(app_database_url, autocommit=True) as conn:
        deliveries.record(conn, new("old"))
        assert deliveries.record_many(conn, [new("old"), new("x"), new("x"), new("y")]) == {"x", "y"}
        assert conn.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 3


def test_raw_json_text_is_stored_as_the_same_jsonb(app_database_url):
    import json

    from webhook_bridge.events import parse

    body = b'{"webhookEvent": "jira:issue_created", "n": 1.50, "big": 12345678901234567890, "t": "caf\xc3\xa9"}'
    payload, text = parse(body)
    assert text is not None
    raw = deliveries.NewDelivery("raw", False, "e", "VDI-1", payload, DeliveryStatus.PENDING, dag_id="d",
                                 dag_run_id="jira__raw", payload_json=text)
    parsed = deliveries.NewDelivery("parsed", False, "e", "VDI-1", payload, DeliveryStatus.PENDING, dag_id="d",
                                    dag_run_id="jira__parsed")
    with psycopg.connect(app_database_url, autocommit=True) as conn:
        assert deliveries.record_many(conn, [raw, parsed]) == {"raw", "parsed"}
        stored = dict(conn.execute("SELECT delivery_id, payload FROM deliveries").fetchall())
    assert stored["raw"] == stored["parsed"] == json.loads(body)


def test_claim_due_takes_the_most_overdue_first_and_mark_dispatched_marks_them_all(app_database_url):
    with psycopg.connect(app_database_url, autocommit=True) as setup:
        for delivery_id in ("a", "b", "c"):
            deliveries.record(setup, new(delivery_id))
        setup.execute("UPDATE deliveries SET next_attempt_at = now() - interval '1 minute' WHERE delivery_id = 'c'")
        deliveries.record(setup, new("ignored", DeliveryStatus.IGNORED))
    with psycopg.connect(app_database_url) as first, psycopg.connect(app_database_url) as second:
        held = deliveries.claim_due(first, limit=2)
        assert [claimed.delivery_id for claimed in held] == ["c", "a"]
        assert [claimed.delivery_id for claimed in deliveries.claim_due(second, limit=5)] == ["b"]
        second.rollback()
        deliveries.mark_dispatched(first, ["c", "a"])
        first.commit()
        assert deliveries.get_status(second, "a") is DeliveryStatus.DISPATCHED
        assert deliveries.get_status(second, "b") is DeliveryStatus.PENDING
        assert conn_attempts(second, "c") == 1


def conn_attempts(conn, delivery_id):
    return conn.execute("SELECT attempts FROM deliveries WHERE delivery_id = %s", (delivery_id,)).fetchone()[0]


@pytest.fixture
def listener(app_database_url):
    """A connection listening to the relay's channel and to ``marker``, which the tests notify to mark a point."""
    with psycopg.connect(app_database_url, autocommit=True) as conn:
        deliveries.listen(conn)
        conn.execute("LISTEN marker")
        yield conn


def channels_until_marker(conn, listener) -> list[str]:
    """Notify ``marker`` on ``conn``; the channels ``listener`` was notified on, in commit order, up to and including
    that ``marker``."""
    conn.execute("NOTIFY marker")
    seen = []
    for notification in listener.notifies(timeout=10):
        seen.append(notification.channel)
        if notification.channel == "marker":
            return seen
    raise AssertionError(f"no marker within 10 s (seen: {seen})")


def test_recording_pending_deliveries_notifies_the_relay_once_per_commit(app_database_url, listener):
    channel = deliveries.NEW_DELIVERY_CHANNEL
    with psycopg.connect(app_database_url, autocommit=True) as conn:
        assert deliveries.record_many(conn, [new("a"), new("b"), new("i", DeliveryStatus.IGNORED)]) == {"a", "b", "i"}
        assert channels_until_marker(conn, listener) == [channel, "marker"]

        assert deliveries.record_many(conn, [new("j", DeliveryStatus.IGNORED)]) == {"j"}
        assert deliveries.record_many(conn, [new("a")]) == set()  # a duplicate
        deliveries.mark_failed(conn, "b", "HTTP 400")
        assert channels_until_marker(conn, listener) == ["marker"]

        assert deliveries.requeue(conn, "b")
        assert channels_until_marker(conn, listener) == [channel, "marker"]


def test_relay_beats_show_the_last_one_and_sum_every_relays_attempts(app_database_url):
    with psycopg.connect(app_database_url, autocommit=True) as conn:
        assert deliveries.relay_report(conn) == deliveries.RelayReport(None, {})
        deliveries.relay_beat(conn, "host:1", {"created": 3, "retry": 1})
        deliveries.relay_beat(conn, "host:2", {"created": 2, "refused": 0})
        deliveries.relay_beat(conn, "host:1", {"created": 1})
        report = deliveries.relay_report(conn)
        assert report.trigger_attempts == {"created": 6, "retry": 1}
        assert 0 <= report.last_beat_age_s < 5
        deliveries.relay_beat(conn, "host:1", {"already_triggered": 1}, alive=False)
        deliveries.relay_beat(conn, "host:2", {}, alive=False)
        assert deliveries.relay_report(conn) == deliveries.RelayReport(
            None, {"already_triggered": 1, "created": 6, "retry": 1})


def test_a_beat_forgets_relays_silent_for_a_day(app_database_url):
    with psycopg.connect(app_database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO relay_heartbeats VALUES ('gone:1', now() - interval '25 hours'),"
                     " ('quiet:1', now() - interval '23 hours')")
        deliveries.relay_beat(conn, "host:1", {})
        assert sorted(row[0] for row in conn.execute("SELECT relay_id FROM relay_heartbeats")) == ["host:1", "quiet:1"]


# --- dead letters and the reconcile's statements (migration 0006) ---

def aged(conn, delivery_id: str, received: str, next_attempt: str = "0 seconds") -> None:
    """Make a delivery received ``received`` ago and due ``next_attempt`` from now (negative: overdue)."""
    conn.execute("UPDATE deliveries SET received_at = now() - %s::interval, next_attempt_at = now() + %s::interval"
                 " WHERE delivery_id = %s", (received, next_attempt, delivery_id))


def statuses(conn) -> dict[str, str]:
    return dict(conn.execute("SELECT delivery_id, status FROM deliveries").fetchall())


def test_the_status_column_takes_dead_lettered_and_refuses_anything_unknown(app_database_url):
    with psycopg.connect(app_database_url, autocommit=True) as conn:
        deliveries.record(conn, new("a"))
        deliveries.mark_dead_lettered(conn, "a", "DAG vdi_gone does not exist", "HTTP 404: Dag not found")
        assert deliveries.get_status(conn, "a") is DeliveryStatus.DEAD_LETTERED
        assert conn.execute("SELECT reason, attempts, requeues FROM deliveries").fetchone() == (
            "DAG vdi_gone does not exist", 1, 0)
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE deliveries SET status = 'lost' WHERE delivery_id = 'a'")


def test_requeue_refuses_what_it_cannot_requeue_and_says_why(app_database_url):
    with psycopg.connect(app_database_url, autocommit=True) as conn:
        for delivery_id in ("dead", "done", "failed", "waiting"):
            deliveries.record(conn, new(delivery_id))
        deliveries.record(conn, new("ignored", DeliveryStatus.IGNORED))
        deliveries.mark_dead_lettered(conn, "dead", "DAG vdi_gone does not exist", "HTTP 404")
        deliveries.mark_dispatched(conn, ["done"])
        deliveries.mark_failed(conn, "failed", "HTTP 400")
        refusals = {delivery_id: deliveries.requeue_refusal(conn, delivery_id)
                    for delivery_id in ("dead", "done", "ignored", "unknown", "failed", "waiting")}
        assert "dead-lettered (DAG vdi_gone does not exist)" in refusals["dead"]
        assert "trigger vdi_provision by hand" in refusals["dead"]
        assert "dispatched already (run jira__done of vdi_provision)" in refusals["done"]
        assert "ignored (no route)" in refusals["ignored"]
        assert "no delivery 'unknown' is recorded" in refusals["unknown"]
        assert refusals["failed"] == refusals["waiting"] == ""
        assert [deliveries.requeue(conn, d) for d in ("dead", "done", "ignored", "unknown")] == [False] * 4
        assert statuses(conn)["dead"] == "dead_lettered"
        assert deliveries.requeue(conn, "failed") and statuses(conn)["failed"] == "pending"
        assert conn.execute("SELECT requeues FROM deliveries WHERE delivery_id = 'failed'").fetchone() == (0,)


def test_backlog_counts_failed_and_dead_lettered_deliveries(app_database_url):
    with psycopg.connect(app_database_url, autocommit=True) as conn:
        for delivery_id in ("p", "f1", "f2", "x", "done"):
            deliveries.record(conn, new(delivery_id))
        deliveries.record(conn, new("ignored", DeliveryStatus.IGNORED))
        aged(conn, "p", "1 hour")
        deliveries.mark_failed(conn, "f1", "HTTP 400")
        deliveries.mark_failed(conn, "f2", "HTTP 422")
        deliveries.mark_dead_lettered(conn, "x", "DAG gone", "HTTP 404")
        deliveries.mark_dispatched(conn, ["done"])
        backlog = deliveries.backlog(conn)
        assert (backlog.pending, backlog.failed, backlog.dead_lettered) == (1, 2, 1)
        assert 3590 < backlog.oldest_pending_age_s < 3700


def test_old_pending_in_backoff_are_made_due_and_the_relay_notified(app_database_url, listener):
    with psycopg.connect(app_database_url, autocommit=True) as conn:
        for delivery_id in ("old-waiting", "old-due", "young-waiting", "old-waiting-2"):
            deliveries.record(conn, new(delivery_id))
        channels_until_marker(conn, listener)
        aged(conn, "old-waiting", "20 minutes", "5 minutes")
        aged(conn, "old-waiting-2", "20 minutes", "10 minutes")
        aged(conn, "old-due", "20 minutes", "-1 minute")
        aged(conn, "young-waiting", "1 minute", "5 minutes")
        assert deliveries.count_old_pending(conn, 600, due=False) == 2
        assert deliveries.count_old_pending(conn, 600, due=True) == 1
        assert deliveries.make_old_pending_due(conn, 600, limit=1) == ["old-waiting"]  # the soonest due first
        assert channels_until_marker(conn, listener) == [deliveries.NEW_DELIVERY_CHANNEL, "marker"]
        assert deliveries.make_old_pending_due(conn, 600, limit=5) == ["old-waiting-2"]
        assert sorted(c.delivery_id for c in deliveries.claim_due(conn, 10)) == ["old-due", "old-waiting",
                                                                                 "old-waiting-2"]


def test_handing_out_old_pending_leases_them_so_the_next_call_takes_the_next_ones(app_database_url):
    with psycopg.connect(app_database_url, autocommit=True) as conn:
        for delivery_id in ("a", "b", "c", "young"):
            deliveries.record(conn, new(delivery_id))
        for n, delivery_id in enumerate(("a", "b", "c")):
            aged(conn, delivery_id, "1 hour", f"-{3 - n} minutes")
        first = deliveries.hand_out_old_pending(conn, 600, limit=2, lease_s=600)
        assert [d.delivery_id for d in first] == ["a", "b"]
        assert first[0] == deliveries.HandedOut("a", "jira:issue_created", "VDI-1", "vdi_provision", "jira__a", None)
        assert [d.delivery_id for d in deliveries.hand_out_old_pending(conn, 600, limit=2, lease_s=600)] == ["c"]
        assert deliveries.hand_out_old_pending(conn, 600, limit=2, lease_s=600) == []
        assert set(statuses(conn).values()) == {"pending"}  # still the relay's to mark dispatched
        assert deliveries.claim_due(conn, 10)[0].delivery_id == "young"  # leased ones are not due


def test_failed_deliveries_are_requeued_up_to_the_cap_then_dead_lettered(app_database_url, listener):
    with psycopg.connect(app_database_url, autocommit=True) as conn:
        for delivery_id in ("a", "b", "c"):
            deliveries.record(conn, new(delivery_id))
            deliveries.mark_failed(conn, delivery_id, "HTTP 400: conf refused")
        channels_until_marker(conn, listener)
        conn.execute("UPDATE deliveries SET requeues = 2 WHERE delivery_id = 'c'")
        assert deliveries.count_failed(conn, 2, spent=False) == 2
        assert deliveries.count_failed(conn, 2, spent=True) == 1
        assert deliveries.requeue_failed(conn, 2, limit=1) == ["a"]
        assert channels_until_marker(conn, listener) == [deliveries.NEW_DELIVERY_CHANNEL, "marker"]
        assert [d.delivery_id for d in deliveries.claim_due(conn, 5)] == ["a"]
        assert conn.execute("SELECT requeues FROM deliveries WHERE delivery_id = 'a'").fetchone() == (1,)
        [dead] = deliveries.dead_letter_failed(conn, 2, limit=5)
        assert dead == deliveries.DeadLettered("c", "VDI-1", "vdi_provision", "HTTP 400: conf refused")
        assert statuses(conn) == {"a": "pending", "b": "failed", "c": "dead_lettered"}
        assert conn.execute("SELECT reason FROM deliveries WHERE delivery_id = 'c'").fetchone() == (
            "refused by Airflow after 2 requeues",)
        assert deliveries.dead_letter_failed(conn, 2, limit=5) == []


def test_prune_deletes_finished_deliveries_past_their_retention_ignored_ones_sooner(app_database_url):
    from datetime import timedelta

    with psycopg.connect(app_database_url, autocommit=True) as conn:
        for delivery_id in ("old-done", "old-dead", "old-pending", "old-failed", "new-done", "mid-done"):
            deliveries.record(conn, new(delivery_id))
        for delivery_id in ("old-ignored", "mid-ignored", "new-ignored"):
            deliveries.record(conn, new(delivery_id, DeliveryStatus.IGNORED))
        deliveries.mark_dispatched(conn, ["old-done", "new-done", "mid-done"])
        deliveries.mark_dead_lettered(conn, "old-dead", "DAG gone", "HTTP 404")
        deliveries.mark_failed(conn, "old-failed", "HTTP 400")
        for delivery_id in ("old-done", "old-dead", "old-pending", "old-failed", "old-ignored"):
            aged(conn, delivery_id, "40 days")
        for delivery_id in ("mid-done", "mid-ignored"):
            aged(conn, delivery_id, "5 days")
        retention, ignored = timedelta(days=30), timedelta(days=3)
        assert deliveries.count_prunable(conn, retention, ignored) == 4
        assert deliveries.prune(conn, retention, ignored, limit=3) == 3
        assert deliveries.prune(conn, retention, ignored, limit=3) == 1
        assert deliveries.prune(conn, retention, ignored, limit=3) == 0
        assert sorted(statuses(conn)) == ["mid-done", "new-done", "new-ignored", "old-failed", "old-pending"]

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


def channels_until_marker(listener) -> list[str]:
    """The channels notified, in commit order, up to and including the next ``marker``."""
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
        conn.execute("NOTIFY marker")
        assert channels_until_marker(listener) == [channel, "marker"]

        assert deliveries.record_many(conn, [new("j", DeliveryStatus.IGNORED)]) == {"j"}
        assert deliveries.record_many(conn, [new("a")]) == set()  # a duplicate
        deliveries.mark_failed(conn, "b", "HTTP 400")
        conn.execute("NOTIFY marker")
        assert channels_until_marker(listener) == ["marker"]

        assert deliveries.requeue(conn, "b")
        conn.execute("NOTIFY marker")
        assert channels_until_marker(listener) == [channel, "marker"]


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

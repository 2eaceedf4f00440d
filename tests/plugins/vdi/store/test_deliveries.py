"""vdi.store.deliveries (the bridge's SQL, shared with the reconciler) against a real PostgreSQL."""

import psycopg

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
        held = deliveries.claim(first)
        assert held is not None and held.dag_run_id == f"jira__{held.delivery_id}"
        assert deliveries.claim(second, held.delivery_id) is None
        other = deliveries.claim(second)
        assert other is not None and other.delivery_id != held.delivery_id
        assert deliveries.claim(third) is None
        assert deliveries.claim(third, "ignored") is None
        first.rollback()
        assert deliveries.claim(third).delivery_id == held.delivery_id


def test_retry_dispatch_fail_requeue_and_backlog(app_database_url):
    with psycopg.connect(app_database_url, autocommit=True) as conn:
        for delivery_id in ("a", "b", "c"):
            deliveries.record(conn, new(delivery_id))
        assert deliveries.backlog(conn).pending == 3
        deliveries.mark_retry(conn, "a", "HTTP 503", 3600)
        deliveries.mark_dispatched(conn, "b")
        deliveries.mark_failed(conn, "c", "HTTP 400: bad conf")
        assert deliveries.claim(conn) is None  # a is not due, b and c are no longer pending
        assert deliveries.backlog(conn).pending == 1
        assert conn.execute("SELECT attempts, last_error FROM deliveries WHERE delivery_id = 'a'").fetchone() == (1, "HTTP 503")
        assert deliveries.get_status(conn, "c") is DeliveryStatus.FAILED
        assert deliveries.requeue(conn, "c") and deliveries.claim(conn).delivery_id == "c"
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


def test_claim_many_and_mark_dispatched_many(app_database_url):
    with psycopg.connect(app_database_url, autocommit=True) as setup:
        for delivery_id in ("a", "b", "c"):
            deliveries.record(setup, new(delivery_id))
        deliveries.record(setup, new("ignored", DeliveryStatus.IGNORED))
    with psycopg.connect(app_database_url) as first, psycopg.connect(app_database_url) as second:
        held = deliveries.claim_many(first, ["c", "a", "ignored", "missing"])
        assert [claimed.delivery_id for claimed in held] == ["c", "a"]
        assert [claimed.delivery_id for claimed in deliveries.claim_many(second, None, limit=5)] == ["b"]
        second.rollback()
        deliveries.mark_dispatched_many(first, ["c", "a"])
        first.commit()
        assert deliveries.get_status(second, "a") is DeliveryStatus.DISPATCHED
        assert deliveries.get_status(second, "b") is DeliveryStatus.PENDING
        assert conn_attempts(second, "c") == 1


def conn_attempts(conn, delivery_id):
    return conn.execute("SELECT attempts FROM deliveries WHERE delivery_id = %s", (delivery_id,)).fetchone()[0]

"""The dispatcher's bookkeeping against a real PostgreSQL while Airflow is unreachable (connections refused).

That Airflow really gets exactly one run per delivery is tested with a real Airflow in tests/e2e.
"""

import psycopg

from tests.conftest import wait_until
from tests.webhook_bridge.conftest import AIRFLOW_PASSWORD, jira_body, signed_headers, unreachable_url
from webhook_bridge.dispatcher import retry_delay


def pending_rows(url):
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT delivery_id, status, attempts, last_error, next_attempt_at > now()"
                            " FROM deliveries ORDER BY delivery_id").fetchall()


def test_retry_delay_is_jittered_exponential_and_capped():
    for attempts in range(12):
        ceiling = min(300, 2 * 2 ** attempts)
        delays = [retry_delay(attempts, 2, 300) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len({retry_delay(3, 2, 300) for _ in range(20)}) > 1
    assert retry_delay(10_000, 2, 300) <= 300


def test_airflow_down_leaves_deliveries_pending_with_backoff(make_app, bridge_config, app_database_url):
    app = make_app({**bridge_config, "AIRFLOW_API_URL": unreachable_url(), "AIRFLOW_USERNAME": "vdi",
                    "AIRFLOW_PASSWORD": "pw", "DISPATCHER_THREADS": 0})
    client = app.test_client()
    for delivery_id in ("d1", "d2"):
        body = jira_body(key=f"VDI-{delivery_id[1]}")
        assert client.post("/webhooks/jira", data=body, headers=signed_headers(body, delivery_id)).status_code == 202
    bridge = app.extensions["webhook_bridge"]
    assert bridge.dispatcher is not None
    assert bridge.dispatcher.sweep() == 1  # the first refusal ends the sweep: Airflow is down
    rows = pending_rows(app_database_url)
    assert [row[1] for row in rows] == ["pending", "pending"]
    retried = [row for row in rows if row[2] == 1]
    assert len(retried) == 1 and retried[0][3] == "token: ConnectionError" and retried[0][4] is True
    assert 'vdi_bridge_triggers_total{outcome="retry"} 1.0' in client.get("/metrics").get_data(as_text=True)


def test_a_new_delivery_wakes_a_dispatcher_thread_at_once(make_app, bridge_config, app_database_url):
    app = make_app({**bridge_config, "AIRFLOW_API_URL": unreachable_url(), "AIRFLOW_USERNAME": "vdi",
                    "AIRFLOW_PASSWORD": "pw", "DISPATCHER_THREADS": 1, "SWEEP_INTERVAL_S": 3600})
    client = app.test_client()
    body = jira_body()
    response = client.post("/webhooks/jira", data=body, headers=signed_headers(body, "woken"))
    assert response.status_code == 202
    response.close()  # the wake-up is sent once the answer is closed, i.e. after Jira has it
    wait_until(lambda: pending_rows(app_database_url)[0][2] == 1, timeout_s=10, message="a dispatch attempt")


def test_queued_wakeups_are_dispatched_together_each_once(make_app, bridge_config, app_database_url, fake_airflow):
    app = make_app({**bridge_config, "AIRFLOW_API_URL": fake_airflow.url, "AIRFLOW_USERNAME": "vdi",
                    "AIRFLOW_PASSWORD": AIRFLOW_PASSWORD, "DISPATCHER_THREADS": 0})
    client = app.test_client()
    ids = [f"batch-{n}" for n in range(5)]
    for n, delivery_id in enumerate(ids):
        body = jira_body(key=f"VDI-{n + 1}")
        assert client.post("/webhooks/jira", data=body, headers=signed_headers(body, delivery_id)).status_code == 202
    dispatcher = app.extensions["webhook_bridge"].dispatcher
    assert dispatcher.dispatch(ids[:3] + ["unknown"]) == ["created"] * 3
    assert dispatcher.sweep() == 2  # the two left, in one batch
    assert dispatcher.dispatch(ids) == []  # nothing pending any more
    assert sorted(fake_airflow.runs) == sorted(f"jira__{delivery_id}" for delivery_id in ids)
    rows = pending_rows(app_database_url)
    assert {row[1] for row in rows} == {"dispatched"} and {row[2] for row in rows} == {1}


def test_the_ack_does_not_wait_for_a_trigger_airflow_has_not_answered(make_app, bridge_config, app_database_url,
                                                                       fake_airflow):
    fake_airflow.gate.clear()  # Airflow holds every trigger unanswered until the gate opens
    app = make_app({**bridge_config, "AIRFLOW_API_URL": fake_airflow.url, "AIRFLOW_USERNAME": "vdi",
                    "AIRFLOW_PASSWORD": AIRFLOW_PASSWORD, "DISPATCHER_THREADS": 1, "SWEEP_INTERVAL_S": 3600})
    client = app.test_client()
    first, second = jira_body(key="VDI-1"), jira_body(key="VDI-2")
    client.post("/webhooks/jira", data=first, headers=signed_headers(first, "held-1")).close()
    wait_until(lambda: fake_airflow.triggers_received == 1, message="the first trigger to reach Airflow")

    answer = client.post("/webhooks/jira", data=second, headers=signed_headers(second, "held-2"))
    assert (answer.status_code, answer.json["status"]) == (202, "accepted")
    assert fake_airflow.runs == {}, "the second ack came after Airflow answered the first trigger"
    answer.close()

    fake_airflow.gate.set()
    wait_until(lambda: {row[1] for row in pending_rows(app_database_url)} == {"dispatched"},
               message="both deliveries dispatched")
    assert sorted(fake_airflow.runs) == ["jira__held-1", "jira__held-2"]

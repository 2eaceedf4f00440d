"""The relay (``webhook_bridge.relay``) against a real PostgreSQL, with Airflow's stand-in over real HTTP or
unreachable (connections refused). That Airflow really gets exactly one run per delivery is tested with a real
Airflow in tests/e2e."""

import logging
import os
import signal
import subprocess
import sys

import psycopg
import pytest

from tests.conftest import REPO_ROOT, wait_until
from tests.webhook_bridge.conftest import (AIRFLOW_PASSWORD, approval_body, jira_body, signed_headers,
                                          unreachable_url)
from webhook_bridge.relay import APPLICATION_NAME, retry_delay


def rows(url):
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT delivery_id, status, attempts, last_error, next_attempt_at > now()"
                            " FROM deliveries ORDER BY delivery_id").fetchall()


def post(client, delivery_id: str, issue_number: int = 1) -> int:
    body = jira_body(key=f"VDI-{issue_number}")
    response = client.post("/webhooks/jira", data=body, headers=signed_headers(body, delivery_id))
    response.close()
    return response.status_code


def airflow_config(fake_airflow) -> dict:
    return {"AIRFLOW_API_URL": fake_airflow.url, "AIRFLOW_USERNAME": "vdi", "AIRFLOW_PASSWORD": AIRFLOW_PASSWORD}


def test_retry_delay_is_jittered_exponential_and_capped():
    for attempts in range(12):
        ceiling = min(300, 2 * 2 ** attempts)
        delays = [retry_delay(attempts, 2, 300) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len({retry_delay(3, 2, 300) for _ in range(20)}) > 1
    assert retry_delay(10_000, 2, 300) <= 300


def test_airflow_down_leaves_deliveries_pending_with_backoff_and_the_retry_counted(make_app, make_relay,
                                                                                   bridge_config, app_database_url):
    client = make_app(bridge_config).test_client()
    assert [post(client, delivery_id, n + 1) for n, delivery_id in enumerate(("d1", "d2"))] == [202, 202]
    relay = make_relay({**bridge_config, "AIRFLOW_API_URL": unreachable_url(), "AIRFLOW_USERNAME": "vdi",
                        "AIRFLOW_PASSWORD": "pw"})
    assert relay.drain() == 1  # the first refusal ends the drain: Airflow is down
    found = rows(app_database_url)
    assert [row[1] for row in found] == ["pending", "pending"]
    retried = [row for row in found if row[2] == 1]
    assert len(retried) == 1 and retried[0][3] == "token: ConnectionError" and retried[0][4] is True
    relay.stop()  # writes its counts
    assert 'vdi_bridge_triggers_total{outcome="retry"} 1.0' in client.get("/metrics").get_data(as_text=True)


def test_every_due_delivery_is_triggered_once_in_batches(make_app, make_relay, bridge_config, app_database_url,
                                                         fake_airflow):
    client = make_app(bridge_config).test_client()
    ids = [f"batch-{n:02}" for n in range(10)]
    assert {post(client, delivery_id, n + 1) for n, delivery_id in enumerate(ids)} == {202}
    relay = make_relay({**bridge_config, **airflow_config(fake_airflow)})
    assert relay.dispatch() == ["created"] * 8  # one batch
    assert relay.drain() == 2  # the two left
    assert relay.drain() == 0
    assert sorted(fake_airflow.runs) == sorted(f"VDI-{n + 1}__jira__{delivery_id}" for n, delivery_id in enumerate(ids))
    assert {(row[1], row[2]) for row in rows(app_database_url)} == {("dispatched", 1)}


def test_an_approval_is_one_run_named_after_its_ticket_with_a_note_and_a_repeat_is_airflows_409(
        make_app, make_relay, bridge_config, app_database_url, fake_airflow):
    client = make_app(bridge_config).test_client()
    body = approval_body("VDI-12")
    assert client.post("/webhooks/jira", data=body, headers=signed_headers(body, "approve-1")).status_code == 202
    relay = make_relay({**bridge_config, **airflow_config(fake_airflow)})
    assert relay.dispatch() == ["created"]
    assert fake_airflow.runs == {"VDI-12__jira__approve-1": {
        "path": "/api/v2/dags/vdi_provision/dagRuns", "dag_run_id": "VDI-12__jira__approve-1", "logical_date": None,
        "conf": {"delivery_id": "approve-1", "issue_key": "VDI-12", "event": "jira:issue_updated"},
        "note": "VDI-12 moved to Approved in Jira"}}
    # The relay's commit was lost after Airflow took the trigger: the next attempt is refused as already there.
    with psycopg.connect(app_database_url, autocommit=True) as conn:
        conn.execute("UPDATE deliveries SET status = 'pending' WHERE delivery_id = 'approve-1'")
    assert relay.dispatch() == ["already_triggered"]
    assert list(fake_airflow.runs) == ["VDI-12__jira__approve-1"]
    assert [row[1] for row in rows(app_database_url)] == ["dispatched"]


def test_a_recorded_delivery_wakes_the_relay_at_once(make_app, make_relay, bridge_config, fake_airflow):
    client = make_app(bridge_config).test_client()
    relay = make_relay({**bridge_config, **airflow_config(fake_airflow), "RELAY_THREADS": 1,
                        "SWEEP_INTERVAL_S": 3600})
    relay.start()
    assert post(client, "first", 1) == 202
    wait_until(lambda: "VDI-1__jira__first" in fake_airflow.runs, message="the first delivery triggered")
    # The relay's first look (at start) is over: only the notification of the next commit can wake it.
    assert post(client, "second", 2) == 202
    wait_until(lambda: "VDI-2__jira__second" in fake_airflow.runs, message="the second delivery triggered")


def test_a_delivery_nobody_notified_is_found_by_the_sweep(make_app, make_relay, bridge_config, app_database_url,
                                                          fake_airflow):
    client = make_app(bridge_config).test_client()
    relay = make_relay({**bridge_config, **airflow_config(fake_airflow), "RELAY_THREADS": 1,
                        "SWEEP_INTERVAL_S": 0.3})
    relay.start()
    assert post(client, "notified", 1) == 202
    wait_until(lambda: "VDI-1__jira__notified" in fake_airflow.runs, message="the notified delivery triggered")
    with psycopg.connect(app_database_url, autocommit=True) as conn:  # a plain INSERT sends no notification
        conn.execute("INSERT INTO deliveries (delivery_id, event, payload, dag_id, dag_run_id)"
                     " VALUES ('silent', 'jira:issue_created', '{}', 'vdi_provision', 'VDI-2__jira__silent')")
    wait_until(lambda: "VDI-2__jira__silent" in fake_airflow.runs, timeout_s=5, message="the silent delivery triggered")


def test_the_relay_listens_and_triggers_again_after_its_connections_break(make_app, make_relay, bridge_config,
                                                                         app_database_url, fake_airflow):
    client = make_app(bridge_config).test_client()
    relay = make_relay({**bridge_config, **airflow_config(fake_airflow), "RELAY_THREADS": 1,
                        "SWEEP_INTERVAL_S": 3600})
    relay.start()
    app = client.application.extensions["webhook_bridge"]
    wait_until(app.relay_alive, message="the relay's first beat")
    with psycopg.connect(app_database_url, autocommit=True) as conn:
        killed = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                              " WHERE datname = current_database() AND application_name = %s",
                              (APPLICATION_NAME,)).fetchall()
    assert len(killed) >= 2 and all(done for (done,) in killed)  # the listening one and the pool's
    assert post(client, "after-the-break", 1) == 202
    wait_until(lambda: "VDI-1__jira__after-the-break" in fake_airflow.runs, message="the delivery triggered")


def test_the_relay_process_triggers_and_the_ack_does_not_wait_for_airflow(make_app, bridge_config,
                                                                          app_database_url, fake_airflow):
    fake_airflow.gate.clear()  # Airflow holds every trigger unanswered until the gate opens
    client = make_app({**bridge_config, **airflow_config(fake_airflow)}).test_client()
    env = {**os.environ, "VDI_DATABASE_URL": app_database_url, "AIRFLOW_API_URL": fake_airflow.url,
           "AIRFLOW_USERNAME": "vdi", "AIRFLOW_PASSWORD": AIRFLOW_PASSWORD, "BRIDGE_SWEEP_INTERVAL_S": "3600"}
    relay = subprocess.Popen([sys.executable, "-m", "webhook_bridge.relay"], cwd=REPO_ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: client.get("/readyz").status_code == 200, timeout_s=30,
                   message="the bridge ready, the relay's beat included")
        assert post(client, "held-1", 1) == 202
        wait_until(lambda: fake_airflow.triggers_received == 1, message="the first trigger to reach Airflow")

        assert post(client, "held-2", 2) == 202
        assert fake_airflow.runs == {}, "the second ack came after Airflow answered the first trigger"

        fake_airflow.gate.set()
        wait_until(lambda: {row[1] for row in rows(app_database_url)} == {"dispatched"},
                   message="both deliveries dispatched")
        assert sorted(fake_airflow.runs) == ["VDI-1__jira__held-1", "VDI-2__jira__held-2"]
    finally:
        relay.send_signal(signal.SIGTERM)
        output, _ = relay.communicate(timeout=30)
    assert relay.returncode == 0, output
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["relay"] is False  # it said goodbye
    assert 'vdi_bridge_triggers_total{outcome="created"} 2.0' in client.get("/metrics").get_data(as_text=True)
    assert AIRFLOW_PASSWORD not in output


def test_the_relays_writes_do_not_wait_for_the_wal_flush(make_relay, bridge_config, fake_airflow):
    relay = make_relay({**bridge_config, **airflow_config(fake_airflow)})
    with relay.pool.connection() as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "off"


# --- routes to a DAG that does not exist: dead-lettered after the grace, not retried forever ---

TYPO_ROUTE = [{"moved_to": ["Approved"], "dag_id": "vdi_provisioning"}]  # no such DAG in Airflow


@pytest.fixture
def airflow_with_dags():
    from tests.webhook_bridge.airflow_dags import AirflowWithDags

    fake = AirflowWithDags("vdi", AIRFLOW_PASSWORD, missing_dags={"vdi_provisioning"})
    yield fake
    fake.close()


@pytest.fixture
def typo_delivery(make_app, make_relay, bridge_config, airflow_with_dags):
    """``typo_delivery(delivery_id, number, grace_s)``: the bridge takes a delivery routed to the missing DAG; its
    test client, and a relay with that ``MISSING_DAG_GRACE_S``."""

    def take(delivery_id: str, number: int, grace_s: float):
        client = make_app({**bridge_config, "ROUTES": TYPO_ROUTE}).test_client()
        assert post(client, delivery_id, number) == 202
        relay = make_relay({**bridge_config, **airflow_config(airflow_with_dags), "MISSING_DAG_GRACE_S": grace_s})
        return client, relay

    return take


def make_due(url) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE deliveries SET next_attempt_at = now() WHERE status = 'pending'")


def test_a_delivery_routed_to_a_missing_dag_is_dead_lettered_once_and_shown_in_metrics(
        typo_delivery, app_database_url, airflow_with_dags, caplog):
    client, relay = typo_delivery("typo-1", 1, grace_s=0)
    with caplog.at_level(logging.INFO, logger="webhook_bridge.relay"):
        assert relay.dispatch() == ["dead_lettered"]
        make_due(app_database_url)
        assert relay.drain() == 0  # final: never claimed again
    [row] = rows(app_database_url)
    assert row[:4] == ("typo-1", "dead_lettered", 1, "HTTP 404: Dag with dag_id: 'vdi_provisioning' not found")
    with psycopg.connect(app_database_url) as conn:
        assert conn.execute("SELECT reason FROM deliveries").fetchone() == ("DAG vdi_provisioning does not exist",)
    [line] = [r for r in caplog.records if "typo-1" in r.getMessage()]
    assert line.levelno == logging.WARNING and "outcome=dead_lettered" in line.getMessage()
    assert airflow_with_dags.runs == {}
    relay.stop()  # writes its counts
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'vdi_bridge_deliveries_by_status{status="dead_lettered"} 1.0' in metrics
    assert 'vdi_bridge_deliveries_by_status{status="pending"} 0.0' in metrics
    assert 'vdi_bridge_triggers_total{outcome="dead_lettered"} 1.0' in metrics


def test_a_missing_dag_is_retried_through_the_grace_then_dead_lettered(typo_delivery, app_database_url):
    _, relay = typo_delivery("typo-2", 2, grace_s=1.0)
    assert relay.dispatch() == ["dag_missing"]
    [row] = rows(app_database_url)
    assert row[1:3] == ("pending", 1) and row[4] is True  # waits for its next attempt
    outcomes = []

    def dead_lettered() -> bool:
        make_due(app_database_url)
        outcomes.extend(relay.dispatch())
        return outcomes[-1] == "dead_lettered"

    wait_until(dead_lettered, timeout_s=10, interval_s=0.2, message="dead-lettered after the grace")
    assert set(outcomes[:-1]) <= {"dag_missing"}
    assert rows(app_database_url)[0][1] == "dead_lettered"


def test_a_dag_that_appears_within_the_grace_takes_its_deliveries(typo_delivery, app_database_url,
                                                                  airflow_with_dags):
    _, relay = typo_delivery("early", 3, grace_s=3600)
    assert relay.dispatch() == ["dag_missing"]
    airflow_with_dags.missing_dags.clear()  # the DAG processor parsed the new file
    make_due(app_database_url)
    assert relay.dispatch() == ["created"]
    assert list(airflow_with_dags.runs) == ["VDI-3__jira__early"]
    assert rows(app_database_url)[0][1] == "dispatched"


def test_a_relay_killed_mid_trigger_leaves_every_delivery_to_the_next_relay_which_triggers_each_once(
        make_app, make_relay, bridge_config, app_database_url, fake_airflow):
    fake_airflow.gate.clear()  # the first trigger reaches Airflow and is held there, unanswered
    client = make_app(bridge_config).test_client()
    assert [post(client, f"kill-{n}", n) for n in (1, 2, 3)] == [202, 202, 202]
    env = {**os.environ, "VDI_DATABASE_URL": app_database_url, "AIRFLOW_API_URL": fake_airflow.url,
           "AIRFLOW_USERNAME": "vdi", "AIRFLOW_PASSWORD": AIRFLOW_PASSWORD, "BRIDGE_RELAY_THREADS": "1"}
    killed = subprocess.Popen([sys.executable, "-m", "webhook_bridge.relay"], cwd=REPO_ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: fake_airflow.triggers_received == 1, timeout_s=30, message="a trigger in flight")
    finally:
        killed.kill()  # SIGKILL: no clean stop, its claim's transaction is left open until the server drops it
        killed.wait(10)
    fake_airflow.gate.set()  # Airflow creates the run whose answer nobody reads
    wait_until(lambda: len(fake_airflow.runs) == 1, message="Airflow to take the orphaned trigger")
    assert {row[1] for row in rows(app_database_url)} == {"pending"}  # nothing was committed by the killed relay

    relay = make_relay({**bridge_config, **airflow_config(fake_airflow)})
    # The server drops the killed relay's locks as soon as it notices its connection gone.
    outcomes = wait_until(lambda: relay.dispatch() or None, message="the next relay to claim the deliveries")
    assert sorted(outcomes) == ["already_triggered", "created", "created"]
    assert sorted(fake_airflow.runs) == [f"VDI-{n}__jira__kill-{n}" for n in (1, 2, 3)]
    assert {row[1] for row in rows(app_database_url)} == {"dispatched"}


def test_the_listening_thread_outlives_an_unexpected_error_and_keeps_beating(make_app, make_relay, bridge_config,
                                                                            fake_airflow):
    client = make_app(bridge_config).test_client()
    relay = make_relay({**bridge_config, **airflow_config(fake_airflow), "RELAY_THREADS": 1,
                        "SWEEP_INTERVAL_S": 3600})
    connect, calls = relay._connect, []

    def connect_failing_once():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("not a database error")
        return connect()

    relay._connect = connect_failing_once
    relay.start()
    wait_until(client.application.extensions["webhook_bridge"].relay_alive, timeout_s=10,
               message="the relay's beat after the error")
    assert post(client, "after-the-error", 1) == 202
    wait_until(lambda: "VDI-1__jira__after-the-error" in fake_airflow.runs, message="the delivery triggered")

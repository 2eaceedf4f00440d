"""The webhook bridge in the real local stack: gunicorn, PostgreSQL, Airflow's scheduler and REST API.

Deliveries go to the stack's own bridge, which routes ``jira:issue_created`` to ``vdi_provision`` (the
default routes). Runs are counted through Airflow's REST API by the ``delivery_id`` in their conf.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
import requests

from tests.conftest import wait_until
from webhook_bridge.signature import sign

pytestmark = pytest.mark.e2e

DAG_ID = "vdi_provision"


@pytest.fixture(scope="module")
def stack(local_stack, airflow_api):
    wait_until(lambda: airflow_api.dag_exists(DAG_ID), timeout_s=120, interval_s=1,
               message=f"{DAG_ID} parsed by Airflow")
    return local_stack


def supervisorctl(stack: dict, *args: str) -> str:
    config = Path(stack["VDI_LOCAL_DIR"]) / "run" / "supervisord.conf"
    result = subprocess.run([str(Path(sys.executable).parent / "supervisorctl"), "-c", str(config), *args],
                            capture_output=True, text=True, timeout=120)
    return result.stdout


def delivery(stack: dict, delivery_id: str, issue_number: int) -> tuple[bytes, dict]:
    body = json.dumps({
        "timestamp": int(time.time() * 1000), "webhookEvent": "jira:issue_created",
        "issue_event_type_name": "issue_created",
        "issue": {"id": str(issue_number), "key": f"VDI-{issue_number}",
                  "fields": {"project": {"key": "VDI"}, "issuetype": {"name": "Desktop"}, "summary": "e2e"}},
    }).encode()
    headers = {"Content-Type": "application/json", "X-Atlassian-Webhook-Identifier": delivery_id,
               "X-Hub-Signature": sign(stack["JIRA_WEBHOOK_SECRET"], body)}
    return body, headers


def post(stack: dict, body: bytes, headers: dict) -> requests.Response:
    return requests.post(f"{stack['BRIDGE_URL']}/webhooks/jira", data=body, headers=headers, timeout=10)


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


def statuses(stack: dict, delivery_ids: list[str]) -> dict[str, str]:
    with psycopg.connect(stack["VDI_DATABASE_URL"]) as conn:
        rows = conn.execute("SELECT delivery_id, status FROM deliveries WHERE delivery_id = ANY(%s)",
                            (delivery_ids,)).fetchall()
    return dict(rows)


def test_the_stack_runs_the_bridge_healthy_and_ready(stack):
    assert requests.get(f"{stack['BRIDGE_URL']}/healthz", timeout=5).status_code == 200
    ready = requests.get(f"{stack['BRIDGE_URL']}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    unsigned = requests.post(f"{stack['BRIDGE_URL']}/webhooks/jira", data=b"{}", timeout=5,
                             headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401


def test_ten_concurrent_copies_of_one_delivery_make_exactly_one_run(stack, airflow_api):
    delivery_id = f"e2e-{uuid.uuid4()}"
    body, headers = delivery(stack, delivery_id, 9001)
    start = threading.Barrier(10)

    def send(_):
        start.wait()
        return post(stack, body, headers)

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(send, range(10)))
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [200] * 9 + [202], [answer.text for answer in answers]
    assert sorted(answer.json()["status"] for answer in answers) == ["accepted"] + ["duplicate"] * 9

    wait_until(lambda: statuses(stack, [delivery_id]) == {delivery_id: "dispatched"}, timeout_s=60,
               message="the delivery dispatched")
    assert airflow_api.runs_by_delivery(DAG_ID)[delivery_id] == [f"jira__{delivery_id}"]
    # More copies after the trigger change nothing.
    assert post(stack, body, headers).json()["status"] == "duplicate"
    assert len(airflow_api.runs_by_delivery(DAG_ID)[delivery_id]) == 1


def test_airflow_down_and_bridge_restarted_every_delivery_still_gets_exactly_one_run(stack, airflow_api):
    delivery_ids = [f"e2e-outage-{uuid.uuid4()}" for _ in range(5)]
    try:
        assert "stopped" in supervisorctl(stack, "stop", "airflow:*")
        for number, delivery_id in enumerate(delivery_ids):
            answer = post(stack, *delivery(stack, delivery_id, 9100 + number))
            assert answer.status_code == 202, answer.text
        with psycopg.connect(stack["VDI_DATABASE_URL"]) as conn:
            wait_until(lambda: conn.execute(
                "SELECT count(*) FROM deliveries WHERE delivery_id = ANY(%s) AND status = 'pending' AND attempts > 0",
                (delivery_ids,)).fetchone()[0] >= 1, timeout_s=30, message="a failed trigger attempt")
        assert set(statuses(stack, delivery_ids).values()) == {"pending"}
        # A bridge restart loses nothing: the pending rows are in PostgreSQL, and the new workers sweep them.
        supervisorctl(stack, "restart", "webhook-bridge")
        wait_until(lambda: answers(f"{stack['BRIDGE_URL']}/healthz"), timeout_s=30, message="the bridge back")
    finally:
        supervisorctl(stack, "start", "airflow:*")
        wait_until(airflow_api.healthy, timeout_s=240, interval_s=1, message="Airflow healthy again")
    wait_until(lambda: set(statuses(stack, delivery_ids).values()) == {"dispatched"}, timeout_s=180, interval_s=1,
               message="every delivery dispatched")
    runs = airflow_api.runs_by_delivery(DAG_ID)
    assert {delivery_id: runs.get(delivery_id) for delivery_id in delivery_ids} == {
        delivery_id: [f"jira__{delivery_id}"] for delivery_id in delivery_ids}

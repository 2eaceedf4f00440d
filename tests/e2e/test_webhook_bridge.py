"""The webhook bridge in the real local stack: gunicorn, its relay, PostgreSQL, Airflow's scheduler and REST API.

Deliveries go to the stack's own bridge, whose default routes send an issue moved into (or created in) the trigger
status to ``vdi_provision``; the synthetic deliveries here are issues created in it. Runs are counted through
Airflow's REST API by the ``delivery_id`` or ``issue_key`` in their conf.
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
from atlassian import Jira
from psycopg.rows import dict_row

from sandbox.demo import file_request
from tests.conftest import wait_until
from webhook_bridge.signature import sign

pytestmark = pytest.mark.e2e

DAG_ID = "vdi_provision"
RUN_DEADLINE_S = 300


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
                  "fields": {"project": {"key": "VDI"}, "issuetype": {"name": "Desktop"},
                             "status": {"name": "Approved"}, "summary": "e2e"}},
    }).encode()
    headers = {"Content-Type": "application/json", "X-Atlassian-Webhook-Identifier": delivery_id,
               "X-Hub-Signature": sign(stack["JIRA_WEBHOOK_SECRET"], body)}
    return body, headers


def post(stack: dict, body: bytes, headers: dict) -> requests.Response:
    return requests.post(f"{stack['BRIDGE_URL']}/webhooks/jira", data=body, headers=headers, timeout=10)


class JiraLikeSender:
    """Sends deliveries one after the other, each again until the bridge answers 2xx, as Jira retries."""

    def __init__(self, stack: dict, deliveries: list[tuple[bytes, dict]]):
        self.stack, self.deliveries = stack, deliveries
        self.refused = 0  # attempts that got no 2xx (the bridge down)
        self.answered: list[int] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _accepted(self, body: bytes, headers: dict) -> int | None:
        try:
            answer = post(self.stack, body, headers)
        except requests.RequestException:
            answer = None
        if answer is not None and answer.ok:
            return answer.status_code
        self.refused += 1
        return None

    def _run(self) -> None:
        for body, headers in self.deliveries:
            self.answered.append(wait_until(lambda: self._accepted(body, headers), timeout_s=120, interval_s=0.2,
                                            message="the bridge to take the delivery"))


def statuses(stack: dict, delivery_ids: list[str]) -> dict[str, str]:
    with psycopg.connect(stack["VDI_DATABASE_URL"]) as conn:
        rows = conn.execute("SELECT delivery_id, status FROM deliveries WHERE delivery_id = ANY(%s)",
                            (delivery_ids,)).fetchall()
    return dict(rows)


def test_the_stack_runs_the_bridge_healthy_and_ready(stack):
    assert requests.get(f"{stack['BRIDGE_URL']}/healthz", timeout=5).status_code == 200
    ready = requests.get(f"{stack['BRIDGE_URL']}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["relay"] is True  # the relay's beat, read from the database
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
    assert airflow_api.runs_by_delivery(DAG_ID)[delivery_id] == [f"VDI-9001__jira__{delivery_id}"]
    # More copies after the trigger change nothing.
    assert post(stack, body, headers).json()["status"] == "duplicate"
    assert len(airflow_api.runs_by_delivery(DAG_ID)[delivery_id]) == 1


def test_airflow_down_and_the_bridge_restarted_while_deliveries_arrive_each_gets_exactly_one_run(stack, airflow_api):
    delivery_ids = [f"e2e-outage-{uuid.uuid4()}" for _ in range(12)]
    before, during, after = [[delivery(stack, delivery_id, 9100 + number)
                              for number, delivery_id in enumerate(delivery_ids) if number // 4 == group]
                             for group in range(3)]
    try:
        assert "stopped" in supervisorctl(stack, "stop", "airflow:*")
        assert [post(stack, *request).status_code for request in before] == [202] * 4
        with psycopg.connect(stack["VDI_DATABASE_URL"]) as conn:
            wait_until(lambda: conn.execute(
                "SELECT count(*) FROM deliveries WHERE delivery_id = ANY(%s) AND status = 'pending' AND attempts > 0",
                (delivery_ids,)).fetchone()[0] >= 1, timeout_s=30, message="a failed trigger attempt")
        # The bridge and its relay go down with deliveries pending; more arrive while they are down (Jira retries
        # each until it is taken) and after they are back. Nothing is lost: the rows are in PostgreSQL.
        assert supervisorctl(stack, "stop", "webhook-bridge", "webhook-relay").count("stopped") == 2
        sender = JiraLikeSender(stack, during)
        wait_until(lambda: sender.refused >= 1, timeout_s=30, message="a delivery refused while the bridge is down")
        assert supervisorctl(stack, "start", "webhook-bridge", "webhook-relay").count("started") == 2
        sender.thread.join(150)
        assert sender.answered == [202] * 4
        assert [post(stack, *request).status_code for request in after] == [202] * 4
        assert set(statuses(stack, delivery_ids).values()) == {"pending"}
    finally:
        supervisorctl(stack, "start", "webhook-bridge", "webhook-relay", "airflow:*")
        wait_until(airflow_api.healthy, timeout_s=240, interval_s=1, message="Airflow healthy again")
    wait_until(lambda: set(statuses(stack, delivery_ids).values()) == {"dispatched"}, timeout_s=180, interval_s=1,
               message="every delivery dispatched")
    runs = airflow_api.runs_by_delivery(DAG_ID)
    assert {delivery_id: runs.get(delivery_id) for delivery_id in delivery_ids} == {
        delivery_id: [f"VDI-{9100 + number}__jira__{delivery_id}"] for number, delivery_id in enumerate(delivery_ids)}


def recorded_deliveries(stack: dict, issue_key: str) -> list[dict]:
    with psycopg.connect(stack["VDI_DATABASE_URL"], row_factory=dict_row) as conn:
        return conn.execute("SELECT delivery_id, status, reason, dag_run_id, note FROM deliveries"
                            " WHERE issue_key = %s ORDER BY received_at", (issue_key,)).fetchall()


def request_state(stack: dict, issue_key: str) -> str | None:
    with psycopg.connect(stack["VDI_DATABASE_URL"]) as conn:
        row = conn.execute("SELECT state FROM desktop_requests WHERE issue_key = %s", (issue_key,)).fetchone()
    return row[0] if row else None


def all_taken(stack: dict, issue_key: str) -> bool:
    """Every webhook the Jira sandbox sent about the issue reached the bridge, and none waits for the relay."""
    sent = requests.get(f"{stack['JIRA_URL']}/_sandbox/webhook-deliveries", timeout=5).json()
    sent = [d for d in sent if d["issueKey"] == issue_key]
    recorded = {d["delivery_id"]: d["status"] for d in recorded_deliveries(stack, issue_key)}
    return all(d["state"] == "delivered" and recorded.get(d["identifier"]) in ("dispatched", "ignored") for d in sent)


def test_one_approval_is_one_run_named_after_the_ticket_with_a_note_though_the_dag_moves_and_comments_on_it(
        stack, airflow_api):
    jira = Jira(url=stack["JIRA_URL"], username=stack["JIRA_USER"], password=stack["JIRA_TOKEN"])
    issue_key = file_request(jira, "standard", "alice@studio.example")
    jira.set_issue_status(issue_key, "Approved")  # with the same Jira account the DAG uses
    state = wait_until(lambda: (found := request_state(stack, issue_key)) in ("ready", "failed") and found,
                       RUN_DEADLINE_S, f"{issue_key} handled", interval_s=2)
    last_move = f"no route for event jira:issue_updated (status moved to {'Ready' if state == 'ready' else 'Failed'})"
    wait_until(lambda: any(d["reason"] == last_move for d in recorded_deliveries(stack, issue_key)), timeout_s=60,
               message="the DAG's last transition back through the webhook")
    wait_until(lambda: all_taken(stack, issue_key), timeout_s=60, message="every delivery about the ticket taken")

    recorded = recorded_deliveries(stack, issue_key)
    [approval] = [d for d in recorded if d["dag_run_id"]]
    assert approval["status"] == "dispatched" and approval["dag_run_id"].startswith(f"{issue_key}__jira__")
    ignored = [d["reason"] for d in recorded if d["status"] == "ignored"]
    assert "no route for event jira:issue_created (created in Open)" in ignored and last_move in ignored
    assert "no route for event jira:issue_updated (no status change)" in ignored  # the DAG's comments
    if state == "ready":
        assert "no route for event jira:issue_updated (status moved to In Progress)" in ignored
    runs = [run["dag_run_id"] for run in airflow_api.dag_runs(DAG_ID)
            if (run.get("conf") or {}).get("issue_key") == issue_key]
    assert runs == [approval["dag_run_id"]]
    assert airflow_api.dag_run(DAG_ID, approval["dag_run_id"])["note"] == f"{issue_key} moved to Approved in Jira"

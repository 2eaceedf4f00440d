"""vdi_reconcile end to end on the local stack: a ticket approved while the bridge is down (its webhook never
arrives) is found by a triggered reconcile run and becomes Ready through the relay, as a webhook would have made
it; a delivery the reconcile dead-letters shows in the bridge's /metrics."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import requests
from atlassian import Jira

from sandbox.demo import file_and_approve
from tests.conftest import wait_until
from tests.e2e.conftest import AirflowApi

pytestmark = pytest.mark.e2e

RUN_DEADLINE_S = 300


@pytest.fixture(scope="module")
def jira(local_stack) -> Jira:
    return Jira(url=local_stack["JIRA_URL"], username=local_stack["JIRA_USER"], password=local_stack["JIRA_TOKEN"])


def supervisorctl(stack: dict, *args: str) -> str:
    config = Path(stack["VDI_LOCAL_DIR"]) / "run" / "supervisord.conf"
    return subprocess.run([str(Path(sys.executable).parent / "supervisorctl"), "-c", str(config), *args],
                          capture_output=True, text=True, timeout=120).stdout


def reconcile(airflow: AirflowApi, **conf) -> dict:
    """Trigger vdi_reconcile, wait for it to finish, and return its summary (the report's XCom)."""
    run_id = airflow.trigger("vdi_reconcile", conf)
    run = wait_until(lambda: (r := airflow.dag_run("vdi_reconcile", run_id))["state"] in ("success", "failed") and r,
                     RUN_DEADLINE_S, "the reconcile run to finish", interval_s=2)
    entry = airflow.get(f"/dags/vdi_reconcile/dagRuns/{run_id}/taskInstances/report/xcomEntries/return_value")
    summary = entry["value"]
    assert run["state"] == "success", summary
    return summary


def ticket_status(jira: Jira, issue_key: str) -> str:
    return jira.get_issue(issue_key, fields="status")["fields"]["status"]["name"]


def test_a_ticket_approved_while_the_bridge_is_down_is_found_by_the_reconcile_and_becomes_ready(
        local_stack, jira, airflow_api):
    assert supervisorctl(local_stack, "stop", "webhook-bridge").count("stopped") == 1
    try:
        issue_key = file_and_approve(jira)
        summary = reconcile(airflow_api, lost_after_s=0)
    finally:
        supervisorctl(local_stack, "start", "webhook-bridge")

    assert summary["lost_webhooks"]["fixed"] >= 1
    wait_until(lambda: ticket_status(jira, issue_key) == "Ready", RUN_DEADLINE_S, f"{issue_key} to be Ready",
               interval_s=2)
    runs = [r["dag_run_id"] for r in airflow_api.dag_runs("vdi_provision")
            if r["dag_run_id"].startswith(issue_key + "__")]
    assert any(run.startswith(f"{issue_key}__jira__reconcile-{issue_key}-") for run in runs), runs
    again = reconcile(airflow_api, lost_after_s=0)
    assert again["lost_webhooks"]["found"] == 0


def test_a_delivery_the_reconcile_dead_letters_is_visible_in_the_bridge_metrics(local_stack, airflow_api):
    with psycopg.connect(local_stack["VDI_DATABASE_URL"], autocommit=True) as conn:
        conn.execute(
            "INSERT INTO deliveries (delivery_id, event, issue_key, status, payload, dag_id, dag_run_id, attempts,"
            " requeues, last_error) VALUES ('e2e-refused-for-good', 'jira:issue_updated', 'VDI-99999', 'failed',"
            " '{}', 'vdi_provision', 'VDI-99999__jira__e2e-refused-for-good', 5, 99, 'refused by Airflow')"
            " ON CONFLICT DO NOTHING")

    summary = reconcile(airflow_api)

    assert summary["deliveries"]["dead_lettered"] >= 1
    metrics = requests.get(f"{local_stack['BRIDGE_URL']}/metrics", timeout=10).text
    dead = re.search(r'^vdi_bridge_deliveries_by_status\{status="dead_lettered"\} (\S+)$', metrics, re.MULTILINE)
    assert dead and float(dead.group(1)) >= 1, metrics[-2000:]

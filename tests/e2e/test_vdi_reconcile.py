"""vdi_reconcile end to end on the local stack: a ticket approved while the bridge is down (its webhook never
arrives) is found by a triggered reconcile run and becomes Ready through the relay, as a webhook would have made
it; a delivery the reconcile dead-letters shows in the bridge's /metrics; the ``vdi reconcile`` console script
drives real runs of it (a dry run changes nothing, a real one fixes)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timezone
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


def vdi(stack: dict, *args: str) -> subprocess.CompletedProcess:
    """The installed ``vdi`` console script with its settings from the stack's ``stack.env`` (as docs/cli.md
    shows), none from this process's environment."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "VDI_", "JIRA_", "LEOSTREAM_", "AWS_", "BRIDGE_"))}
    return subprocess.run([str(Path(sys.executable).parent / "vdi"), "--env-file",
                           str(Path(stack["VDI_LOCAL_DIR"]) / "stack.env"), *args],
                          env=env, capture_output=True, text=True, timeout=RUN_DEADLINE_S + 60)


def delivery_status(stack: dict, delivery_id: str) -> str:
    with psycopg.connect(stack["VDI_DATABASE_URL"], autocommit=True) as conn:
        return conn.execute("SELECT status FROM deliveries WHERE delivery_id = %s", (delivery_id,)).fetchone()[0]


def no_scheduled_reconcile_soon(airflow: AirflowApi, margin_s: float = 240) -> None:
    """Wait until no vdi_reconcile run is active and the next scheduled one is more than ``margin_s`` away, so
    only the runs the test starts touch the deliveries it watches."""
    def clear() -> bool:
        active = airflow.get("/dags/vdi_reconcile/dagRuns", state=["queued", "running"])["total_entries"]
        after = airflow.get("/dags/vdi_reconcile").get("next_dagrun_run_after")
        due_in = (datetime.fromisoformat(after.replace("Z", "+00:00")) - datetime.now(timezone.utc)).total_seconds() \
            if after else float("inf")
        return not active and due_in > margin_s

    wait_until(clear, RUN_DEADLINE_S + margin_s, "a quiet spell between scheduled reconcile runs", interval_s=2)


def test_vdi_reconcile_dry_run_reports_a_spent_delivery_and_leaves_it_and_the_real_run_dead_letters_it(
        local_stack, airflow_api):
    delivery_id = "e2e-cli-refused-for-good"
    no_scheduled_reconcile_soon(airflow_api)
    with psycopg.connect(local_stack["VDI_DATABASE_URL"], autocommit=True) as conn:
        conn.execute(
            "INSERT INTO deliveries (delivery_id, event, issue_key, status, payload, dag_id, dag_run_id, attempts,"
            " requeues, last_error) VALUES (%s, 'jira:issue_updated', 'VDI-99998', 'failed', '{}', 'vdi_provision',"
            " 'VDI-99998__jira__e2e-cli-refused-for-good', 5, 99, 'refused by Airflow') ON CONFLICT DO NOTHING",
            (delivery_id,))

    dry = vdi(local_stack, "reconcile", "--dry-run", "--json")

    assert dry.returncode == 0, dry.stderr
    out = json.loads(dry.stdout)
    assert out["dry_run"] is True and out["dag_run_id"].startswith("vdi-cli__")
    run = airflow_api.dag_run("vdi_reconcile", out["dag_run_id"])
    assert (run["state"], run["conf"], run["note"]) == ("success", {"dry_run": True}, "vdi reconcile --dry-run")
    report = out["report"]
    assert (report["run_id"], report["dry_run"], report["failed_parts"]) == (out["dag_run_id"], True, [])
    assert report["deliveries"]["dead_lettered"] >= 1
    assert delivery_status(local_stack, delivery_id) == "failed"

    applied = vdi(local_stack, "reconcile")

    assert applied.returncode == 0, applied.stderr
    heading = re.match(r"vdi_reconcile run (vdi-cli__\S+) \(applied\):\n", applied.stdout)
    assert heading, applied.stdout
    run = airflow_api.dag_run("vdi_reconcile", heading.group(1))
    assert (run["state"], run["conf"]) == ("success", {"dry_run": False})
    assert re.search(r"^ {4}dead_lettered: [1-9]", applied.stdout, re.MULTILINE), applied.stdout
    assert delivery_status(local_stack, delivery_id) == "dead_lettered"

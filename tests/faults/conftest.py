"""The fault suite's stack and its one verdict.

Every test here runs against one stack of its own (``fault_stack``): the scenarios stop and restart its parts, so
they never share the session's ``local_stack``. Its settings are the product's defaults (retries, retry delays,
timeouts): a scenario that passes only because retries were tuned up proves nothing. Only the poke interval is
short, so a settled request is seen sooner; it changes when a wait looks, not how long anything may take.

Each scenario files a few tickets for users no other scenario uses, brings its fault, lifts it, and ends with
``assert_settled``: every request Ready, or Failed with one plain comment; one live instance per ready ticket;
no comment posted twice; no delivery lost.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg
import pytest
import requests
from psycopg.rows import dict_row

from bench.burst import SEED_PATH, approve_at_once, bench_users, file_tickets
from sandbox.stack.settings import StackSettings
from sandbox.stack.supervisor import Supervisor
from tests.conftest import wait_until
from tests.e2e.conftest import AirflowApi, running_stack, stack_environment
from vdi.jira import COMMENT_MARKER_PREFIX
from vdi.settings import SETTINGS

# Enough distinct desktop users for every scenario of a session (each takes its own).
USERS = 60
TERMINAL_STATES = ("ready", "failed", "rejected")
TERMINAL_STATUSES = ("Ready", "Failed", "Rejected")
LIVE_INSTANCE_STATES = ("pending", "running", "stopping", "stopped")
# What a requester must never read on a ticket.
INTERNAL = re.compile(r"https?://|arn:aws|\b\d{1,3}(\.\d{1,3}){3}\b|Traceback|\bi-[0-9a-f]{8,}\b")
SANDBOX_URL_KEYS = {"jira": "JIRA_URL", "leostream": "LEOSTREAM_URL", "aws": "AWS_ENDPOINT_URL"}
# The local stack retries sooner and fewer times, and reports a failure with less patience, than the product
# (sandbox/stack/settings.py); the fault stack takes the product's own defaults back.
PRODUCT_RETRIES = {setting.variable: setting.default for setting in SETTINGS
                   if setting.variable in ("VDI_TASK_RETRIES", "VDI_RETRY_DELAY_S", "VDI_FAILURE_REPORT_WAIT_S")}


def pytest_configure(config):
    config.addinivalue_line("markers", "faults: the fault suite (a stack of its own; run by `make test-slow`)")


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.faults)
            item.add_marker(pytest.mark.slow)


@dataclass
class FaultStack:
    """A running stack and the handles a scenario needs to break and mend it."""

    env: dict[str, str]
    local_dir: Path
    airflow: AirflowApi
    supervisor: Supervisor
    _users: list[dict] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def jira(self):
        from atlassian import Jira

        return Jira(url=self.env["JIRA_URL"], username=self.env["JIRA_USER"], password=self.env["JIRA_TOKEN"],
                    timeout=60)

    def file_tickets(self, count: int) -> list[str]:
        """``count`` Desktop Request tickets (status Open), each for a user no other ticket of the session has."""
        with self._lock:
            if len(self._users) < count:
                raise RuntimeError(f"the fault stack's seed has {len(self._users)} unused users left, not {count}")
            users, self._users[:] = self._users[:count], self._users[count:]
        return file_tickets(self.jira(), users)

    def approve(self, keys: list[str]) -> None:
        """Approve every ticket at once in the Jira sandbox (its webhook goes to the bridge)."""
        approve_at_once(self.jira, keys)

    def add_fault(self, system: str, **rule) -> dict:
        """A fault rule on a sandbox (``jira``, ``leostream``: sandbox/faults.py; ``aws``: sandbox/aws/hook.py)."""
        response = requests.post(f"{self.env[SANDBOX_URL_KEYS[system]]}/_sandbox/faults", json=rule, timeout=10)
        response.raise_for_status()
        return response.json()

    def clear_faults(self, system: str) -> None:
        requests.delete(f"{self.env[SANDBOX_URL_KEYS[system]]}/_sandbox/faults", timeout=10).raise_for_status()

    def program_pid(self, qualified_name: str) -> int | None:
        """The pid supervisord gives for a program (``airflow:airflow-api-server``, ``webhook-bridge`` ...)."""
        result = self.supervisor.ctl("pid", qualified_name, check=False)
        text = result.stdout.strip()
        return int(text) if text.isdigit() and text != "0" else None

    def stop(self, qualified_name: str) -> None:
        self.supervisor.ctl("stop", qualified_name)

    def start(self, qualified_name: str) -> None:
        self.supervisor.ctl("start", qualified_name)

    def kill(self, qualified_name: str) -> None:
        """SIGKILL a program (no clean shutdown); supervisord starts it again as configured."""
        pid = self.program_pid(qualified_name)
        if pid is None:
            raise RuntimeError(f"{qualified_name} is not running")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
                   30, f"{qualified_name} ({pid}) to die")

    def ensure_running(self) -> None:
        """Every program of the stack running again (a scenario's cleanup)."""
        self.supervisor.ctl("start", "all", check=False)
        wait_until(lambda: "RUNNING" in self.supervisor.ctl("status", check=False).stdout
                   and not any(state in self.supervisor.ctl("status", check=False).stdout
                               for state in ("STOPPED", "STARTING", "BACKOFF", "FATAL", "EXITED")),
                   120, "every program of the fault stack running", interval_s=1)
        wait_until(self.airflow.healthy, 120, "Airflow healthy", interval_s=1)

    def database(self) -> psycopg.Connection:
        return psycopg.connect(self.env["VDI_DATABASE_URL"], row_factory=dict_row, connect_timeout=10,
                               autocommit=True)


@pytest.fixture(scope="session")
def fault_stack(tmp_path_factory):
    """A stack of the fault suite's own, with ``USERS`` extra desktop users in its Jira seed and no demo."""
    work = tmp_path_factory.mktemp("fault-stack")
    users = bench_users(USERS)
    seed = json.loads(SEED_PATH.read_text())
    seed["users"] += users
    (work / "jira_seed.json").write_text(json.dumps(seed))
    local_dir = work / "local"
    local_dir.mkdir()
    extra = {"VDI_DEMO": "0", "JIRA_SANDBOX_SEED": str(work / "jira_seed.json"), "VDI_POKE_INTERVAL_S": "2",
             **PRODUCT_RETRIES}
    for values in running_stack(local_dir, **extra):
        env = {**stack_environment(local_dir), **extra}
        stack = FaultStack(env=values, local_dir=local_dir,
                           airflow=AirflowApi(values["AIRFLOW_API_URL"], values["AIRFLOW_USERNAME"],
                                              values["AIRFLOW_PASSWORD"], timeout_s=15),
                           supervisor=Supervisor(StackSettings.from_environment(env)), _users=list(users))
        yield stack


# --- the verdict -------------------------------------------------------------------------------------------------

def _requests(stack: FaultStack, keys: list[str]) -> dict[str, dict]:
    try:
        with stack.database() as conn:
            rows = conn.execute("SELECT issue_key, request_id, state, step FROM desktop_requests"
                                " WHERE issue_key = ANY(%s)", (keys,)).fetchall()
    except psycopg.OperationalError:  # a scenario may have the database down for a while
        return {}
    return {row["issue_key"]: row for row in rows}


def _statuses(jira, keys: list[str]) -> dict[str, str]:
    try:
        return {key: jira.get_issue(key, fields="status")["fields"]["status"]["name"] for key in keys}
    except requests.RequestException:  # a scenario may have Jira down for a while
        return {}


def _our_comments(jira, key: str) -> list[dict]:
    return [c for c in jira.issue_get_comments(key)["comments"] if COMMENT_MARKER_PREFIX in c["body"]]


def _kind(comment: dict) -> str:
    return comment["body"].split(COMMENT_MARKER_PREFIX, 1)[1].strip().split("/")[0]


def _live_instances(stack: FaultStack, keys: list[str]) -> Counter:
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=stack.env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    live: Counter = Counter()
    filters = [{"Name": "tag:vdi:issue", "Values": keys},
               {"Name": "instance-state-name", "Values": list(LIVE_INSTANCE_STATES)}]
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                live[next(t["Value"] for t in instance["Tags"] if t["Key"] == "vdi:issue")] += 1
    return live


def _lost_deliveries(stack: FaultStack, keys: list[str]) -> list[str]:
    """Deliveries of these tickets that were routed to a DAG but never reached Airflow."""
    with stack.database() as conn:
        rows = conn.execute("SELECT delivery_id, issue_key, status, dag_run_id FROM deliveries"
                            " WHERE issue_key = ANY(%s) AND status NOT IN ('ignored')", (keys,)).fetchall()
    lost = [f"{row['issue_key']} {row['delivery_id']}: {row['status']}" for row in rows
            if row["status"] != "dispatched"]
    routed = {row["issue_key"] for row in rows}
    lost += [f"{key}: no delivery was routed" for key in keys if key not in routed]
    return lost


def assert_settled(stack: FaultStack, keys: list[str], deadline_s: float = 900) -> dict[str, str]:
    """Wait until every ticket's request and Jira status have settled, then check the fault suite's invariants;
    returns issue key -> final state (``ready`` or ``failed``)."""
    jira = stack.jira()

    def settled():
        rows = _requests(stack, keys)
        if len(rows) < len(keys) or any(row["state"] not in TERMINAL_STATES for row in rows.values()):
            return None
        statuses = _statuses(jira, keys)
        if len(statuses) < len(keys) or any(status not in TERMINAL_STATUSES for status in statuses.values()):
            return None
        # A Failed ticket is settled once its failure comment is there (it follows the move to Failed).
        if any(statuses[key] == "Failed" and not any(_kind(c).startswith("failed") for c in _our_comments(jira, key))
               for key in keys):
            return None
        return rows, statuses

    rows, statuses = wait_until(settled, deadline_s, f"{len(keys)} requests to settle", interval_s=2)
    # No provisioning run of these tickets may still be going (it could yet post or launch something).
    runs = [run for run in stack.airflow.dag_runs("vdi_provision")
            if (run.get("conf") or {}).get("issue_key") in keys]
    wait_until(lambda: all(stack.airflow.dag_run("vdi_provision", run["dag_run_id"])["state"]
                           in ("success", "failed") for run in runs), 300, "their runs to finish", interval_s=2)

    problems: list[str] = []
    live = _live_instances(stack, keys)
    for key in keys:
        state, status = rows[key]["state"], statuses[key]
        if (state, status) not in {("ready", "Ready"), ("failed", "Failed")}:
            problems.append(f"{key}: request {state}, ticket {status}")
        if live[key] != 1 if state == "ready" else live[key] > 1:
            problems.append(f"{key}: {state} with {live[key]} live instances")
        comments = _our_comments(jira, key)
        for kind, count in Counter(_kind(c) for c in comments).items():
            if count > 1:
                problems.append(f"{key}: comment {kind} posted {count} times")
        if state == "failed":
            failures = [c["body"] for c in comments if _kind(c).startswith("failed")]
            problems += [f"{key}: failure comment not plain: {body!r}" for body in failures
                         if INTERNAL.search(body.split(COMMENT_MARKER_PREFIX)[0])]
        if not any((run.get("conf") or {}).get("issue_key") == key for run in runs):
            problems.append(f"{key}: no vdi_provision run")
    problems += _lost_deliveries(stack, keys)
    assert not problems, "the fault left the system unsettled:\n" + "\n".join(problems)
    return {key: rows[key]["state"] for key in keys}

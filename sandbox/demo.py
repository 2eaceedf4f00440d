"""The end of ``make run``: file a desktop request in the Jira sandbox, approve it, and follow it to "ready".

``python -m sandbox.demo`` runs it again against a running stack (settings from ``.local/stack.env``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import psycopg
from atlassian import Jira
from psycopg.rows import dict_row

from sandbox.stack.settings import StackSettings, read_stack_env

DEADLINE_S = 300
SEED_PATH = Path(__file__).with_name("data") / "jira_seed.json"


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def file_and_approve(jira: Jira, bundle: str = "standard", user_email: str = "alice@studio.example") -> str:
    """Create a desktop request for ``user_email`` and approve it; returns the issue key."""
    issue_key = file_request(jira, bundle, user_email)
    jira.set_issue_status(issue_key, "Approved")
    return issue_key


def file_request(jira: Jira, bundle: str, user_email: str) -> str:
    """Create a desktop request (status Open) for ``user_email``; returns the issue key."""
    fields = {field["name"].lower(): field["id"] for field in jira.get_all_fields()}
    user = next(u for u in json.loads(SEED_PATH.read_text())["users"] if u["emailAddress"] == user_email)
    issue = jira.issue_create(fields={
        "project": {"key": "VDI"},
        "issuetype": {"name": "Desktop Request"},
        "summary": f"Demo: a {bundle} desktop for {user['displayName']}",
        fields["desktop bundle"]: {"value": bundle},
        fields["desktop user"]: {"accountId": user["accountId"]},
    })
    return issue["key"]


def follow(database_url: str, jira: Jira, issue_key: str, deadline_s: float = DEADLINE_S) -> bool:
    """Print each step as the request moves; True when it is ready, False (with the reason) otherwise."""
    deadline = time.monotonic() + deadline_s
    seen = 0
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(database_url, row_factory=dict_row, connect_timeout=5) as conn:
                row = conn.execute("SELECT request_id, state FROM desktop_requests WHERE issue_key = %s",
                                   (issue_key,)).fetchone()
                events = conn.execute("SELECT step, outcome, detail FROM request_events WHERE request_id = %s"
                                      " ORDER BY event_id", (row["request_id"],)).fetchall() if row else []
        except psycopg.OperationalError as error:
            _say(f"lost the app database while following {issue_key}: {str(error).strip().splitlines()[0]}")
            return False
        for event in events[seen:]:
            _say(f"{issue_key}: {event['step']} {event['outcome']}")
        seen = len(events)
        if row and row["state"] == "ready":
            status = jira.get_issue(issue_key, fields="status")["fields"]["status"]["name"]
            _say(f"{issue_key} is ready; the ticket is {status!r}. Open it in the Airflow UI: vdi_provision.")
            return True
        if row and row["state"] in ("failed", "rejected"):
            cause = events[-1]["detail"].get("cause") or events[-1]["detail"].get("reason") if events else ""
            _say(f"{issue_key} ended {row['state']}: {cause}")
            return False
        time.sleep(2)
    _say(f"{issue_key} was not ready within {deadline_s:.0f}s; see the vdi_provision runs in the Airflow UI")
    return False


def run_demo(settings: StackSettings) -> bool:
    logging.getLogger("atlassian").setLevel(logging.WARNING)
    env = settings.stack_env()
    jira = Jira(url=env["JIRA_URL"], username=env["JIRA_USER"], password=env["JIRA_TOKEN"])
    issue_key = file_and_approve(jira)
    _say(f"filed and approved {issue_key} in the Jira sandbox ({env['JIRA_URL']}/browse/{issue_key})")
    return follow(env["VDI_DATABASE_URL"], jira, issue_key)


def main() -> int:
    settings = StackSettings.from_environment()
    env_file = settings.stack_env_path
    if not env_file.exists():
        print("demo: the stack is not running: `make run` first", file=sys.stderr)
        return 1
    os.environ.update(read_stack_env(env_file))
    return 0 if run_demo(StackSettings.from_environment()) else 1


if __name__ == "__main__":
    sys.exit(main())

"""vdi_provision end to end on the CeleryExecutor: the stack's own Redis broker and two ``airflow celery worker``
programs run the tasks, the way a deployment past one machine does."""

from __future__ import annotations

import re

import psycopg
import pytest
from atlassian import Jira

from sandbox.demo import file_and_approve
from tests.conftest import wait_until
from tests.e2e.conftest import running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.celery, pytest.mark.slow]

WORKERS = 2
RUN_DEADLINE_S = 300
# Celery's own line for each task a worker finished (Airflow's workload task, whatever it ran).
TASK_SUCCEEDED = re.compile(r"Task \S*execute_workload\[[0-9a-f-]+\] succeeded")


@pytest.fixture(scope="module")
def celery_stack(tmp_path_factory):
    """A stack of its own (the session's runs the LocalExecutor), without the demo: the test files its tickets."""
    yield from running_stack(tmp_path_factory.mktemp("celery-stack"), AIRFLOW__CORE__EXECUTOR="CeleryExecutor",
                             VDI_CELERY_WORKERS=str(WORKERS), VDI_DEMO="0")


def states(database_url: str, issue_keys: list[str]) -> dict[str, str]:
    with psycopg.connect(database_url) as conn:
        return dict(conn.execute("SELECT issue_key, state FROM desktop_requests WHERE issue_key = ANY(%s)",
                                 (issue_keys,)).fetchall())


def finished_tasks(log_text: str) -> int:
    return len(TASK_SUCCEEDED.findall(log_text))


def test_tickets_become_ready_desktops_with_tasks_run_by_both_celery_workers(celery_stack):
    jira = Jira(url=celery_stack["JIRA_URL"], username=celery_stack["JIRA_USER"], password=celery_stack["JIRA_TOKEN"])
    issue_keys = [file_and_approve(jira, "standard", email)
                  for email in ("alice@studio.example", "bob@studio.example", "carol@studio.example")]

    settled = wait_until(
        lambda: (found := states(celery_stack["VDI_DATABASE_URL"], issue_keys)) and len(found) == len(issue_keys)
        and all(state in ("ready", "failed", "rejected") for state in found.values()) and found,
        RUN_DEADLINE_S, "every ticket to settle", interval_s=2)
    assert settled == dict.fromkeys(issue_keys, "ready")
    assert {jira.get_issue(key, fields="status")["fields"]["status"]["name"] for key in issue_keys} == {"Ready"}

    logs = celery_stack["VDI_LOCAL_DIR"] + "/logs"
    per_worker = {index: finished_tasks(open(f"{logs}/celery-worker-{index}.log").read())
                  for index in range(1, WORKERS + 1)}
    assert all(count > 0 for count in per_worker.values()), per_worker

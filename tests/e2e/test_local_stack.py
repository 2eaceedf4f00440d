"""`make run` / `make stop` for real: embedded PostgreSQL, Airflow's four components, supervisord."""

from __future__ import annotations

import json
import socket

import psutil
import psycopg
import pytest
import requests

from sandbox.stack.processes import stack_processes
from sandbox.stack.settings import StackSettings
from sandbox.stack.supervisor import Supervisor
from tests.e2e.conftest import read_stack_env, run_stack, stack_environment

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A stack of this module's own, so the last test can stop it and look for leftovers."""
    local_dir = tmp_path_factory.mktemp("own-stack")
    env = stack_environment(local_dir)
    started = run_stack("run", env)
    assert started.returncode == 0, started.stdout + started.stderr
    yield local_dir, env, started
    run_stack("stop", env)


def test_run_writes_stack_env_with_working_airflow_credentials(stack):
    local_dir, _, _ = stack
    values = read_stack_env(local_dir)
    token = requests.post(f"{values['AIRFLOW_API_URL']}/auth/token", timeout=10,
                          json={"username": values["AIRFLOW_USERNAME"], "password": values["AIRFLOW_PASSWORD"]})
    assert token.status_code == 201
    health = requests.get(f"{values['AIRFLOW_API_URL']}/api/v2/monitor/health", timeout=10).json()
    assert {name: part["status"] for name, part in health.items()} == {
        "metadatabase": "healthy", "scheduler": "healthy", "triggerer": "healthy", "dag_processor": "healthy"}


def test_airflow_metadata_and_app_schema_live_in_the_embedded_postgres(stack):
    local_dir, env, _ = stack
    secrets = json.loads((local_dir / "secrets.json").read_text())
    port = env["VDI_PG_PORT"]
    with psycopg.connect(f"postgresql://airflow:{secrets['airflow_db_password']}@127.0.0.1:{port}/airflow") as conn:
        assert conn.execute("SELECT to_regclass('dag_run')").fetchone()[0] == "dag_run"
    with psycopg.connect(read_stack_env(local_dir)["VDI_DATABASE_URL"]) as conn:
        tables = {row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"deliveries", "desktop_requests", "request_events", "vdi_schema_version"} <= tables


def test_secrets_stay_out_of_the_run_output(stack):
    local_dir, _, started = stack
    values = read_stack_env(local_dir)
    for key in ("AIRFLOW_PASSWORD", "JIRA_TOKEN", "JIRA_WEBHOOK_SECRET", "LEOSTREAM_PASSWORD"):
        assert values[key] not in started.stdout + started.stderr


def airflow_session(values: dict[str, str]) -> requests.Session:
    """A session carrying a JWT from the API server's ``/auth/token``."""
    token = requests.post(f"{values['AIRFLOW_API_URL']}/auth/token", timeout=10,
                          json={"username": values["AIRFLOW_USERNAME"], "password": values["AIRFLOW_PASSWORD"]})
    token.raise_for_status()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    return session


def test_the_api_servers_connection_form_offers_leostream_with_labelled_fields(stack):
    local_dir, _, _ = stack
    values = read_stack_env(local_dir)
    answer = airflow_session(values).get(f"{values['AIRFLOW_API_URL']}/ui/connections/hook_meta", timeout=60)
    assert answer.status_code == 200, answer.text
    [leostream] = [meta for meta in answer.json() if meta["connection_type"] == "leostream"]
    assert leostream["hook_class_name"] == "vdi.leostream.LeostreamHook"
    assert {name: (leostream["standard_fields"][name] or {}).get("title") for name in ("host", "login", "password")} \
        == {"host": "API URL", "login": "API user", "password": "API password"}
    titles = {name: field["schema"]["title"] for name, field in leostream["extra_fields"].items()}
    assert {"Verify TLS certificate", "AWS center name", "Authentication server",
            "Broker address for desktop agents"} <= set(titles.values())


def test_testing_a_leostream_connection_on_the_api_server_logs_in_to_the_stacks_sandbox(stack):
    from sandbox.seed import CENTER_NAME

    local_dir, _, _ = stack
    values = read_stack_env(local_dir)
    answer = airflow_session(values).post(f"{values['AIRFLOW_API_URL']}/api/v2/connections/test", timeout=60, json={
        "connection_id": "leostream_form_test", "conn_type": "leostream", "host": values["LEOSTREAM_URL"],
        "login": values["LEOSTREAM_USER"], "password": values["LEOSTREAM_PASSWORD"],
        "extra": json.dumps({"center_name": CENTER_NAME})})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["status"] is True, result["message"]
    assert values["LEOSTREAM_PASSWORD"] not in result["message"]


def supervised_pids(env: dict[str, str]) -> list[int]:
    """supervisord and the programs it runs. Their own children (PostgreSQL backends, Airflow's task and
    parsing processes) come and go on their own, so they say nothing about what a second run did."""
    pid = Supervisor(StackSettings.from_environment(env)).pid()
    assert pid is not None, "supervisord is not running"
    return sorted([pid, *(child.pid for child in psutil.Process(pid).children())])


def test_second_run_says_so_and_changes_nothing(stack):
    local_dir, env, _ = stack
    before = supervised_pids(env)
    assert len(before) > 1, "supervisord should be running the stack's programs"
    again = run_stack("run", env)
    assert again.returncode == 0
    assert "already running" in again.stdout
    assert supervised_pids(env) == before


def test_run_refuses_a_taken_port_and_leaves_nothing_running(tmp_path):
    env = stack_environment(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(env["VDI_AIRFLOW_PORT"])))
        squatter.listen()
        result = run_stack("run", env, timeout_s=120)
    assert result.returncode != 0
    assert f"port {env['VDI_AIRFLOW_PORT']} (airflow) is already in use" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert stack_processes(tmp_path) == []


def test_stop_leaves_no_process_running_and_keeps_the_data(stack):
    local_dir, env, _ = stack
    assert stack_processes(local_dir), "the stack should be running before stop"
    stopped = run_stack("stop", env)
    assert stopped.returncode == 0, stopped.stderr
    assert stack_processes(local_dir) == []
    assert (local_dir / "pgdata" / "PG_VERSION").exists()


def test_run_reports_a_database_that_will_not_start_and_leaves_nothing_running(tmp_path):
    env = stack_environment(tmp_path)
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("9\n")  # a cluster this server cannot open
    result = run_stack("run", env, timeout_s=180)
    assert result.returncode != 0
    assert "postgres did not start" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert stack_processes(tmp_path) == []

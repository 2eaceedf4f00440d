"""What the webhook bridge's processes see in the local stack: their secrets, database URL and Airflow's
credentials, and no Jira, Leostream or AWS secret (``programs.bridge_environment``, ``scoped_exec``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sandbox.stack import postgres
from sandbox.stack.programs import bridge_environment, bridge_programs
from sandbox.stack.settings import StackSettings

LEAKS = {"JIRA_TOKEN": "exported-jira-token", "LEOSTREAM_PASSWORD": "exported-broker-password",
         "AWS_SECRET_ACCESS_KEY": "exported-aws-secret", "AWS_ACCESS_KEY_ID": "AKIAEXPORTEDKEY00000"}


@pytest.fixture
def settings(tmp_path) -> StackSettings:
    return StackSettings.from_environment({"VDI_LOCAL_DIR": str(tmp_path / "local"), "PATH": os.environ["PATH"],
                                           "BRIDGE_PROJECTS": "VDI",
                                           "VDI_JIRA_TRIGGER_STATUS": "Approved for desktop", **LEAKS})


def other_secrets(settings: StackSettings) -> set[str]:
    """Every secret of the stack a bridge process must not hold: the generated ones but the webhook secret and
    Airflow's password, and those exported to the launcher."""
    allowed = {settings.secrets["jira_webhook_secret"], settings.secrets["airflow_password"]}
    return (set(settings.secrets.values()) - allowed) | set(LEAKS.values())


def test_the_bridge_gets_its_webhook_secret_airflows_credentials_and_its_own_database_role_only(settings):
    env = bridge_environment(settings, "webhook-bridge")
    stack = settings.stack_env()
    assert env["JIRA_WEBHOOK_SECRET"] == stack["JIRA_WEBHOOK_SECRET"]
    assert (env["AIRFLOW_API_URL"], env["AIRFLOW_USERNAME"], env["AIRFLOW_PASSWORD"]) == (
        stack["AIRFLOW_API_URL"], stack["AIRFLOW_USERNAME"], stack["AIRFLOW_PASSWORD"])
    assert env["BRIDGE_DATABASE_URL"].startswith(f"postgresql://{postgres.BRIDGE_ROLE}:")
    assert (env["BRIDGE_PROJECTS"], env["VDI_JIRA_TRIGGER_STATUS"]) == ("VDI", "Approved for desktop")
    assert not [key for key in env if key.startswith(("AIRFLOW_CONN_", "AIRFLOW__", "JIRA_USER", "LEOSTREAM_", "AWS_"))]
    assert "VDI_DATABASE_URL" not in env  # the app's owner URL
    assert not [key for key, value in env.items() if any(secret in value for secret in other_secrets(settings))]


def test_the_relay_gets_no_webhook_secret(settings):
    env = bridge_environment(settings, "webhook-relay")
    assert "JIRA_WEBHOOK_SECRET" not in env and settings.secrets["jira_webhook_secret"] not in env.values()
    assert env["AIRFLOW_PASSWORD"] and env["BRIDGE_DATABASE_URL"].startswith(f"postgresql://{postgres.BRIDGE_ROLE}:")


def test_a_secrets_manager_webhook_secret_is_the_bridges_to_read_with_its_own_credentials(tmp_path):
    settings = StackSettings.from_environment({"VDI_LOCAL_DIR": str(tmp_path / "local"), **LEAKS,
                                               "BRIDGE_WEBHOOK_SECRET_ID": "vdi/webhook/jira"})
    bridge, relay = (bridge_environment(settings, name) for name in ("webhook-bridge", "webhook-relay"))
    assert bridge["BRIDGE_WEBHOOK_SECRET_ID"] == "vdi/webhook/jira" and bridge["AWS_DEFAULT_REGION"]
    assert "BRIDGE_WEBHOOK_SECRET_ID" not in relay
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & (set(bridge) | set(relay))


def test_a_database_of_the_users_is_used_as_given_unless_the_bridge_has_a_url_of_its_own(tmp_path):
    base = {"VDI_LOCAL_DIR": str(tmp_path / "local"), "VDI_DATABASE_URL": "postgresql://vdi:pw@db.example/vdi"}
    assert bridge_environment(StackSettings.from_environment(base), "webhook-relay")["BRIDGE_DATABASE_URL"] == (
        "postgresql://vdi:pw@db.example/vdi")
    own = {**base, "BRIDGE_DATABASE_URL": "postgresql://vdi_bridge:pw2@db.example/vdi"}
    assert bridge_environment(StackSettings.from_environment(own), "webhook-relay")["BRIDGE_DATABASE_URL"] == (
        own["BRIDGE_DATABASE_URL"])


def test_the_bridges_programs_start_with_that_environment_and_not_the_launchers(settings):
    for program in bridge_programs(settings):
        assert program.command[1:3] == ["-m", "sandbox.stack.scoped_exec"] and not program.with_runtime_env
    show_env = [sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"]
    launcher_env = {**settings.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-m", "sandbox.stack.scoped_exec", "webhook-bridge", *show_env],
                            env=launcher_env, capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(result.stdout)
    seen.pop("LC_CTYPE", None)  # Python's own locale coercion in the child
    assert seen == bridge_environment(settings, "webhook-bridge")
    assert not set(LEAKS) & set(seen)


def test_scoped_exec_refuses_a_program_it_does_not_know():
    result = subprocess.run([sys.executable, "-m", "sandbox.stack.scoped_exec", "airflow-scheduler", "true"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "usage" in result.stderr

import json
import stat

import pytest

from sandbox.stack.settings import STACK_ENV_KEYS, StackSettings


@pytest.fixture
def environ(tmp_path):
    return {"VDI_LOCAL_DIR": str(tmp_path / "local")}


def test_stack_env_lists_the_design_keys_in_order_and_is_private(environ):
    settings = StackSettings.from_environment(environ)
    settings.write_stack_env()
    lines = settings.stack_env_path.read_text().splitlines()
    assert [line.split("=", 1)[0] for line in lines] == list(STACK_ENV_KEYS)
    assert all(line.split("=", 1)[1] for line in lines)
    assert stat.S_IMODE(settings.stack_env_path.stat().st_mode) == 0o600


def test_generated_passwords_survive_a_restart(environ):
    first = StackSettings.from_environment(environ).stack_env()
    second = StackSettings.from_environment(environ).stack_env()
    assert first["AIRFLOW_PASSWORD"] == second["AIRFLOW_PASSWORD"]
    assert first["JIRA_WEBHOOK_SECRET"] == second["JIRA_WEBHOOK_SECRET"]


def test_environment_overrides_every_stack_env_value(environ):
    overrides = {key: f"override-{key}" for key in STACK_ENV_KEYS}
    settings = StackSettings.from_environment({**environ, **overrides})
    assert settings.stack_env() == overrides
    assert settings.runtime_env()["JIRA_URL"] == "override-JIRA_URL"


def test_external_databases_disable_the_embedded_server(environ):
    settings = StackSettings.from_environment({
        **environ,
        "VDI_DATABASE_URL": "postgresql://app@db.example/vdi",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://af@db.example/airflow",
    })
    assert not settings.embedded_postgres_needed
    assert settings.runtime_env()["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("db.example/airflow")


def test_one_external_database_still_needs_the_embedded_server(environ):
    settings = StackSettings.from_environment({**environ, "VDI_DATABASE_URL": "postgresql://app@db.example/vdi"})
    assert settings.embedded_postgres_needed
    assert "127.0.0.1" in settings.airflow_database_url


def test_port_override_must_be_a_port_number(environ):
    with pytest.raises(ValueError, match="VDI_AIRFLOW_PORT='http' is not a TCP port"):
        StackSettings.from_environment({**environ, "VDI_AIRFLOW_PORT": "http"})


def test_runtime_env_uses_postgres_not_sqlite_and_sizes_parallelism(environ):
    env = StackSettings.from_environment(environ).runtime_env()
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert int(env["AIRFLOW__CORE__PARALLELISM"]) <= 8
    assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "False"
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"]


def test_runtime_env_injects_no_import_path_and_enables_connection_tests(environ):
    env = StackSettings.from_environment(environ).runtime_env()
    assert "PYTHONPATH" not in env
    assert env["AIRFLOW__CORE__TEST_CONNECTION"] == "Enabled"


def test_the_leostream_connection_names_the_seeded_aws_center_and_the_auth_server(environ):
    from sandbox.seed import CENTER_NAME
    from vdi.provider import DEFAULT_AUTH_SERVER

    connection = json.loads(StackSettings.from_environment(environ).runtime_env()["AIRFLOW_CONN_LEOSTREAM_DEFAULT"])
    assert connection["conn_type"] == "leostream"
    assert connection["extra"] == {"center_name": CENTER_NAME, "auth_server": DEFAULT_AUTH_SERVER}


def test_the_vdi_db_connection_keeps_the_database_urls_parameters(environ, monkeypatch):
    from psycopg.conninfo import conninfo_to_dict

    from vdi.store.db import database_url

    url = "postgresql://app:s%40cret@db.studio.example:6432/vdi?sslmode=verify-full&application_name=vdi"
    settings = StackSettings.from_environment({**environ, "VDI_DATABASE_URL": url})
    monkeypatch.delenv("VDI_DATABASE_URL", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_VDI_DB", settings.runtime_env()["AIRFLOW_CONN_VDI_DB"])
    assert conninfo_to_dict(database_url()) == conninfo_to_dict(url)

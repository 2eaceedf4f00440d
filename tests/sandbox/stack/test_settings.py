import json
import stat

import pytest

from sandbox.stack.settings import (
    MAX_CELERY_WORKERS,
    STACK_ENV_KEYS,
    StackSettings,
    real_services_problems,
    real_systems,
)


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


REAL = {
    "JIRA_URL": "https://studio.atlassian.net", "JIRA_USER": "vdi-bot@studio.example", "JIRA_TOKEN": "jira-token",
    "LEOSTREAM_URL": "https://broker.studio.example", "LEOSTREAM_USER": "vdi-api", "LEOSTREAM_PASSWORD": "broker-pw",
    "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws", "extra": {"region_name": "eu-west-1"}}),
    "VDI_DATABASE_URL": "postgresql://vdi:pw@db.studio.example/vdi",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://airflow:pw@db.studio.example/airflow",
}


def test_without_real_settings_every_system_is_a_sandbox():
    assert real_systems({}) == {}
    assert real_services_problems({}) == []


def test_each_system_turns_real_by_its_own_variable():
    assert real_systems({"JIRA_URL": "https://studio.atlassian.net"}) == {"jira": "JIRA_URL"}
    assert real_systems({"AIRFLOW_CONN_LEOSTREAM_DEFAULT": "{}"}) == {"leostream": "AIRFLOW_CONN_LEOSTREAM_DEFAULT"}
    assert real_systems({"AIRFLOW_CONN_AWS_DEFAULT": "aws://"}) == {"aws": "AIRFLOW_CONN_AWS_DEFAULT"}
    # Credentials alone (a developer's shell) do not turn AWS real: only the connection the DAGs use does.
    assert real_systems({"AWS_PROFILE": "dev", "AWS_DEFAULT_REGION": "eu-west-1"}) == {}


def test_a_secrets_backend_makes_every_system_real():
    backend = {"AIRFLOW__SECRETS__BACKEND": "airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend"}
    assert set(real_systems(backend)) == {"jira", "leostream", "aws"}
    assert real_services_problems(backend) == []


def test_a_url_without_its_credentials_names_what_is_missing():
    problems = real_services_problems({"JIRA_URL": "https://studio.atlassian.net", "JIRA_USER": "bot@studio.example"})
    assert problems == ["JIRA_TOKEN is missing (JIRA_URL is given)"]


def test_a_connection_given_whole_needs_no_stack_keys():
    given = {"JIRA_URL": "https://studio.atlassian.net", "AIRFLOW_CONN_JIRA_DEFAULT": "{}"}
    assert real_services_problems(given) == []


def test_a_real_broker_with_moto_or_a_sandbox_broker_with_real_aws_is_refused():
    broker_only = {key: REAL[key] for key in ("LEOSTREAM_URL", "LEOSTREAM_USER", "LEOSTREAM_PASSWORD")}
    [problem] = real_services_problems(broker_only)
    assert problem.startswith("leostream is real (LEOSTREAM_URL is given) but aws is not")
    [problem] = real_services_problems({"AIRFLOW_CONN_AWS_DEFAULT": REAL["AIRFLOW_CONN_AWS_DEFAULT"]})
    assert problem.startswith("aws is real (AIRFLOW_CONN_AWS_DEFAULT is given) but leostream is not")


def test_all_real_settings_are_complete():
    assert set(real_systems(REAL)) == {"jira", "leostream", "aws"}
    assert real_services_problems(REAL) == []


def test_real_services_get_no_test_keys_no_sandbox_tuning_and_no_sandbox_extras(environ):
    settings = StackSettings.from_environment({**environ, **REAL})
    env = settings.runtime_env()
    for sandbox_only in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "VDI_PLAYBOOK_BUCKET",
                         "VDI_POKE_INTERVAL_S", "VDI_RETRY_DELAY_S", "VDI_TASK_RETRIES"):
        assert sandbox_only not in env, sandbox_only
    assert json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])["extra"] == {"region_name": "eu-west-1"}
    jira = json.loads(env["AIRFLOW_CONN_JIRA_DEFAULT"])
    assert (jira["host"], jira["login"], jira["password"], jira["extra"]) == (
        REAL["JIRA_URL"], REAL["JIRA_USER"], REAL["JIRA_TOKEN"], {})
    assert json.loads(env["AIRFLOW_CONN_LEOSTREAM_DEFAULT"])["extra"] == {}


def test_stack_env_offers_no_sandbox_value_for_a_real_system(environ):
    settings = StackSettings.from_environment({**environ, **REAL})
    stack = settings.stack_env()
    assert "AWS_ENDPOINT_URL" not in stack
    assert stack["JIRA_URL"] == REAL["JIRA_URL"]
    behind_secrets = StackSettings.from_environment({**environ, "AIRFLOW__SECRETS__BACKEND": "x.Backend"}).stack_env()
    assert not {"JIRA_URL", "JIRA_TOKEN", "LEOSTREAM_URL", "LEOSTREAM_PASSWORD"} & set(behind_secrets)
    assert "AIRFLOW_CONN_JIRA_DEFAULT" not in StackSettings.from_environment(
        {**environ, "AIRFLOW__SECRETS__BACKEND": "x.Backend"}).runtime_env()


def test_a_real_jira_alone_keeps_the_other_sandboxes_and_their_test_keys(environ):
    settings = StackSettings.from_environment({**environ, **{k: REAL[k] for k in ("JIRA_URL", "JIRA_USER", "JIRA_TOKEN")}})
    env = settings.runtime_env()
    assert env["AWS_ACCESS_KEY_ID"] == "testing"
    assert env["AWS_ENDPOINT_URL"] == settings.url("moto")
    # Sandbox tuning is for a stack of sandboxes only.
    assert "VDI_POKE_INTERVAL_S" not in env


def test_the_local_executor_is_the_default_and_runs_no_celery(environ):
    settings = StackSettings.from_environment(environ)
    assert not settings.uses_celery and settings.celery_workers == 0
    assert "AIRFLOW__CELERY__BROKER_URL" not in settings.runtime_env()


@pytest.mark.parametrize("executor", ["CeleryExecutor", "LocalExecutor,CeleryExecutor",
                                      "airflow.providers.celery.executors.celery_executor.CeleryExecutor"])
def test_the_celery_executor_gets_a_password_protected_local_broker(environ, executor):
    settings = StackSettings.from_environment({**environ, "AIRFLOW__CORE__EXECUTOR": executor})
    assert settings.uses_celery and settings.local_redis_needed and settings.celery_workers == 2
    env = settings.runtime_env()
    assert env["AIRFLOW__CORE__EXECUTOR"] == executor
    assert env["AIRFLOW__CELERY__BROKER_URL"] == (
        f"redis://:{settings.secrets['redis_password']}@127.0.0.1:{settings.ports['redis']}/0")
    # The workers share the stack's task slots.
    assert int(env["AIRFLOW__CELERY__WORKER_CONCURRENCY"]) * 2 <= int(env["AIRFLOW__CORE__PARALLELISM"])


def test_a_broker_of_ones_own_starts_no_redis(environ):
    settings = StackSettings.from_environment({**environ, "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                                               "AIRFLOW__CELERY__BROKER_URL": "redis://redis.studio.example:6379/0"})
    assert not settings.local_redis_needed
    assert settings.runtime_env()["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis.studio.example:6379/0"


@pytest.mark.parametrize("workers", ["0", "-1", "two", str(MAX_CELERY_WORKERS + 1)])
def test_the_number_of_celery_workers_must_be_a_small_positive_number(environ, workers):
    with pytest.raises(ValueError, match=f"VDI_CELERY_WORKERS={workers!r}"):
        StackSettings.from_environment({**environ, "VDI_CELERY_WORKERS": workers})


def test_a_url_beside_a_whole_connection_needs_no_credentials_and_the_given_connection_wins(environ):
    given = json.dumps({"conn_type": "jira", "host": "https://studio.atlassian.net", "login": "bot", "password": "t"})
    env = StackSettings.from_environment({**environ, "JIRA_URL": "https://studio.atlassian.net",
                                          "AIRFLOW_CONN_JIRA_DEFAULT": given}).runtime_env()
    assert env["AIRFLOW_CONN_JIRA_DEFAULT"] == given


def test_a_task_process_outlives_the_longest_failure_report_the_product_may_make(environ):
    """Airflow kills a task process ``task_success_overtime`` seconds after its final state, and its failure
    callback with it: the stack must leave room for a report that waits ``VDI_FAILURE_REPORT_WAIT_S`` for Jira."""
    from vdi.settings import SETTINGS

    default_wait = next(int(s.default) for s in SETTINGS if s.variable == "VDI_FAILURE_REPORT_WAIT_S")
    env = StackSettings.from_environment(environ).runtime_env()
    assert int(env["AIRFLOW__CORE__TASK_SUCCESS_OVERTIME"]) > default_wait + 60


def test_a_failure_report_ends_before_the_scheduler_would_take_its_silent_task_for_lost(environ):
    """A task process stops heartbeating once it has reported its failure, but Airflow records the failure only
    when the process exits: a report longer than ``[scheduler] task_instance_heartbeat_timeout`` has the scheduler
    take the task for lost and try it again (a second failure, a second comment)."""
    from airflow.configuration import conf

    from vdi.settings import SETTINGS

    default_wait = next(int(s.default) for s in SETTINGS if s.variable == "VDI_FAILURE_REPORT_WAIT_S")
    env = StackSettings.from_environment(environ).runtime_env()
    timeout = int(env.get("AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT")
                  or conf.get_default_value("scheduler", "task_instance_heartbeat_timeout"))
    # The report's other calls (the ticket's move, the instance's disposal) and the scheduler's check interval.
    assert timeout > default_wait + 30

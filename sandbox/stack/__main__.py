"""``python -m sandbox.stack run|stop|status|clean``: what ``make run``, ``make stop`` and ``make clean`` do."""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time

import requests

from sandbox.stack import celery, postgres
from sandbox.stack.errors import StackError
from sandbox.stack.processes import kill_all, stack_processes
from sandbox.stack.programs import (
    DemoNotReady,
    airflow_programs,
    all_programs,
    ports_in_use,
    post_start_steps,
    postgres_program,
    service_programs,
)
from sandbox.stack.settings import DEFAULT_PORTS, REPO_ROOT, StackSettings, real_services_problems
from sandbox.stack.supervisor import Supervisor

AIRFLOW_HEALTH_DEADLINE_S = 240
SERVICE_HEALTH_DEADLINE_S = 60
CONNECTION_CHECK_TIMEOUT_S = 10


def _say(message: str) -> None:
    print(f"[vdi] {message}", flush=True)


def check_ports_free(settings: StackSettings) -> None:
    for name, port in ports_in_use(settings).items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                variable = DEFAULT_PORTS[name][0]
                raise StackError(f"port {port} ({name}) is already in use: free it, or set {variable} to another port")


def run_logged(settings: StackSettings, name: str, command: list[str], timeout_s: float) -> None:
    """Run a one-off start-up command with the runtime environment; its output goes to a log file."""
    log_path = settings.logs_dir / f"{name}.log"
    with open(log_path, "a") as log:
        try:
            result = subprocess.run(
                [str(settings.python), "-m", "sandbox.stack.exec", str(settings.runtime_env_path), *command],
                cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s,
            )
        except subprocess.TimeoutExpired:
            raise StackError(f"{name} did not finish within {timeout_s:.0f}s; see {log_path}") from None
    if result.returncode != 0:
        raise StackError(f"{name} failed (exit {result.returncode}); see {log_path}")


def wait_for_airflow(settings: StackSettings, supervisor: Supervisor, deadline_s: float) -> None:
    """Wait until /api/v2/monitor/health reports every component healthy."""
    url = f"{settings.stack_env()['AIRFLOW_API_URL']}/api/v2/monitor/health"
    deadline = time.monotonic() + deadline_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        for program in airflow_programs(settings):
            if not supervisor.is_running(program):
                raise StackError(f"{program.name} exited during start-up; see {supervisor.log_path(program)}")
        try:
            health = requests.get(url, timeout=3).json()
            unhealthy = [name for name, part in health.items() if (part or {}).get("status") != "healthy"]
            if not unhealthy:
                return
            last = "waiting for " + ", ".join(unhealthy)
        except (requests.RequestException, ValueError) as error:
            last = type(error).__name__
        time.sleep(1)
    raise StackError(f"Airflow was not healthy within {deadline_s:.0f}s ({last}); see {settings.logs_dir}")


def next_issue_number(database_url: str) -> int:
    """One past the highest issue number the app database knows: the in-memory Jira sandbox starts there."""
    import psycopg

    from vdi.store.requests import highest_issue_number

    with psycopg.connect(database_url, connect_timeout=5) as conn:
        return highest_issue_number(conn) + 1


def wait_for_health(supervisor: Supervisor, program, deadline_s: float) -> None:
    """Wait until the program's health URL answers 2xx."""
    if not program.health_url:
        return
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if not supervisor.is_running(program):
            raise StackError(f"{program.name} exited during start-up; see {supervisor.log_path(program)}")
        try:
            if requests.get(program.health_url, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise StackError(f"{program.name} was not healthy within {deadline_s:.0f}s; see {supervisor.log_path(program)}")


def check_real_services(settings: StackSettings) -> None:
    """One verdict line per real system (and a database of the user's); any failure stops the start."""
    checked = set(settings.real) | ({"database"} if settings.environ.get("VDI_DATABASE_URL") else set())
    if not checked:
        return
    from vdi.check import check_all

    _say("checking the real services")
    # Only the real systems: the sandboxes are not up yet.
    verdicts = check_all(settings.runtime_env(), timeout_s=CONNECTION_CHECK_TIMEOUT_S, systems=checked)
    for verdict in verdicts:
        print(f"  {verdict.line()}", flush=True)
    if failed := [verdict.system for verdict in verdicts if not verdict.ok]:
        raise StackError(f"{', '.join(failed)} failed the connection check (see above)")


def start_redis(settings: StackSettings, supervisor: Supervisor) -> None:
    _say(f"starting Redis (the Celery broker) on port {settings.ports['redis']}")
    celery.write_redis_config(settings)
    program = celery.redis_program(settings)
    supervisor.start(program)
    celery.wait_for_redis(settings.celery_broker_url, lambda: supervisor.is_running(program),
                          SERVICE_HEALTH_DEADLINE_S, supervisor.log_path(program))


def wait_for_celery_workers(settings: StackSettings, supervisor: Supervisor) -> None:
    workers = celery.worker_programs(settings)
    celery.wait_for_workers(settings.celery_broker_url, len(workers),
                            lambda: all(supervisor.is_running(worker) for worker in workers),
                            AIRFLOW_HEALTH_DEADLINE_S, settings.logs_dir)


def run(settings: StackSettings) -> int:
    supervisor = Supervisor(settings)
    if (pid := supervisor.pid()) is not None:
        _say(f"the stack is already running (supervisord pid {pid}); nothing changed. `make stop` stops it.")
        print_summary(settings)
        return 0
    if problems := real_services_problems(settings.environ):
        raise StackError("the real-services settings are incomplete:\n  " + "\n  ".join(problems))
    check_ports_free(settings)
    for directory in (settings.logs_dir, settings.run_dir, settings.airflow_home):
        directory.mkdir(parents=True, exist_ok=True)
    settings.write_runtime_env()
    supervisor.write_config(all_programs(settings))
    started = False
    try:
        if settings.embedded_postgres_needed:
            _say(f"embedded PostgreSQL in {settings.pgdata}")
            postgres.init_cluster(settings.pgdata, settings.secrets["postgres_superuser_password"])
        supervisor.start_daemon()
        started = True
        if settings.embedded_postgres_needed:
            program = postgres_program(settings)
            supervisor.start(program)
            postgres.wait_until_ready(settings.superuser_url, 60, lambda: supervisor.is_running(program))
            if not settings.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
                postgres.ensure_database(settings.superuser_url, "airflow", "airflow", settings.secrets["airflow_db_password"])
            if not settings.environ.get("VDI_DATABASE_URL"):
                postgres.ensure_database(settings.superuser_url, "vdi", "vdi", settings.secrets["vdi_db_password"])
                postgres.ensure_bridge_role(settings.superuser_url, "vdi", postgres.bridge_password(
                    settings.secrets["postgres_superuser_password"]))
        if settings.local_redis_needed:
            start_redis(settings, supervisor)
        _say("migrating Airflow's metadata database")
        run_logged(settings, "airflow-db-migrate", [str(settings.bin_dir / "airflow"), "db", "migrate"], 600)
        run_logged(settings, "airflow-pools", [str(settings.bin_dir / "airflow"), "pools", "import",
                                               str(REPO_ROOT / "include" / "airflow_pools.json")], 120)
        _say("applying the app schema")
        run_logged(settings, "app-migrate", [str(settings.python), "-m", "vdi.store.migrate"], 120)
        check_real_services(settings)
        if settings.sandboxed("jira"):
            settings.learned["JIRA_SANDBOX_FIRST_ISSUE"] = str(next_issue_number(settings.vdi_database_url))
            settings.write_runtime_env()
        _say("starting Airflow (api-server, scheduler, dag-processor, triggerer)")
        supervisor.ctl("start", "airflow:*")
        if settings.uses_celery:
            # The workers need only the migrated database and the broker to start: they boot beside Airflow.
            _say(f"starting {settings.celery_workers} Celery worker(s)")
            supervisor.ctl("start", f"{celery.WORKER_GROUP}:*")
        wait_for_airflow(settings, supervisor, AIRFLOW_HEALTH_DEADLINE_S)
        if settings.uses_celery:
            wait_for_celery_workers(settings, supervisor)
        for program in service_programs(settings):
            _say(f"starting {program.name}")
            supervisor.start(program)
            wait_for_health(supervisor, program, SERVICE_HEALTH_DEADLINE_S)
        settings.write_stack_env()
        print_summary(settings)
        for step in post_start_steps(settings):
            step(settings)
    except DemoNotReady as error:
        print(f"make run: {error}", file=sys.stderr)
        return 1
    except (StackError, KeyboardInterrupt) as error:
        if started:
            supervisor.shutdown()
        kill_all(stack_processes(settings.local_dir))
        reason = "interrupted" if isinstance(error, KeyboardInterrupt) else str(error)
        print(f"make run: {reason}. Nothing is left running.", file=sys.stderr)
        return 1
    return 0


def print_summary(settings: StackSettings) -> None:
    env = settings.stack_env()
    _say("the stack is up:")
    print(f"  Airflow UI and API  {env['AIRFLOW_API_URL']}  (user {env['AIRFLOW_USERNAME']}, "
          f"password in {settings.stack_env_path})")
    print(f"  webhook bridge      {env['BRIDGE_URL']}/webhooks/jira")
    for system, label, url_key, user_key in (("jira", "Jira", "JIRA_URL", "JIRA_USER"),
                                             ("leostream", "Leostream", "LEOSTREAM_URL", "LEOSTREAM_USER")):
        if settings.sandboxed(system):
            print(f"  {label + ' sandbox':<19} {env[url_key]}  (user {env[user_key]})")
        else:
            print(f"  {label:<19} real: {env.get(url_key, 'from ' + settings.real[system])}")
    print(f"  AWS (moto)          {env['AWS_ENDPOINT_URL']}" if settings.sandboxed("aws")
          else f"  AWS                 real: from {settings.real['aws']}")
    print(f"  app database        {env['VDI_DATABASE_URL'].split('@')[-1]}")
    if settings.uses_celery:
        broker = f"Redis on port {settings.ports['redis']}" if settings.local_redis_needed else "AIRFLOW__CELERY__BROKER_URL"
        print(f"  executor            CeleryExecutor, {settings.celery_workers} worker(s), broker {broker}")
    print(f"  settings            {settings.stack_env_path}")
    print(f"  logs                {settings.logs_dir}")
    print("  stop with           make stop")


def stop(settings: StackSettings) -> int:
    supervisor = Supervisor(settings)
    was_running = supervisor.shutdown()
    leftovers = stack_processes(settings.local_dir)
    if leftovers:
        _say(f"stopping {len(leftovers)} process(es) left outside supervisord: "
             + ", ".join(str(p.pid) for p in leftovers))
        kill_all(leftovers)
    _say("stopped; data kept in " + str(settings.local_dir) if was_running or leftovers else "nothing was running")
    return 0


def status(settings: StackSettings) -> int:
    supervisor = Supervisor(settings)
    if supervisor.pid() is None:
        _say("not running")
        return 3
    print(supervisor.ctl("status", check=False).stdout, end="")
    return 0


def clean(settings: StackSettings) -> int:
    stop(settings)
    shutil.rmtree(settings.local_dir, ignore_errors=True)
    _say(f"removed {settings.local_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.stack", description=__doc__)
    parser.add_argument("command", choices=["run", "stop", "status", "clean"])
    args = parser.parse_args(argv)
    try:
        settings = StackSettings.from_environment()
    except ValueError as error:
        print(f"make {args.command}: {error}", file=sys.stderr)
        return 2
    try:
        return {"run": run, "stop": stop, "status": status, "clean": clean}[args.command](settings)
    except StackError as error:
        print(f"make {args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

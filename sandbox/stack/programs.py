"""The programs of the local stack, in start order, with what "healthy" means for each."""

from __future__ import annotations

from collections.abc import Callable

from sandbox.stack import postgres
from sandbox.stack.settings import StackSettings
from sandbox.stack.supervisor import Program

AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def postgres_program(settings: StackSettings) -> Program:
    return Program(
        name="postgres",
        command=postgres.server_command(settings.pgdata, settings.ports["postgres"]),
        user=postgres.SYSTEM_USER if postgres.running_as_root() else None,
        with_runtime_env=False,
        stop_signal="INT",
        stop_as_group=False,
    )


def airflow_programs(settings: StackSettings) -> list[Program]:
    airflow = str(settings.bin_dir / "airflow")
    commands = {
        "api-server": [airflow, "api-server", "--host", "127.0.0.1", "--port", str(settings.ports["airflow"])],
        "scheduler": [airflow, "scheduler"],
        "dag-processor": [airflow, "dag-processor"],
        "triggerer": [airflow, "triggerer"],
    }
    return [Program(name=f"airflow-{name}", command=commands[name], group="airflow") for name in AIRFLOW_COMPONENTS]


def service_programs(settings: StackSettings) -> list[Program]:
    """Programs started once Airflow is healthy (sandboxes, moto, the webhook bridge), in start order.

    Each one listens on ``settings.ports[<its port name>]`` and names a ``health_url``.
    """
    return []


def post_start_steps(settings: StackSettings) -> list[Callable[[StackSettings], None]]:
    """Steps run once every program is healthy and ``stack.env`` is written (e.g. register the Jira webhook).

    Each raises ``StackError`` with a one-line cause when it fails.
    """
    return []


def all_programs(settings: StackSettings) -> list[Program]:
    programs = [postgres_program(settings)] if settings.embedded_postgres_needed else []
    return programs + airflow_programs(settings) + service_programs(settings)


def ports_in_use(settings: StackSettings) -> dict[str, int]:
    """The stack's ports that its own programs will listen on."""
    names = ["airflow"] + (["postgres"] if settings.embedded_postgres_needed else [])
    names += [program.port_name for program in service_programs(settings) if program.port_name]
    return {name: settings.ports[name] for name in names}

"""The programs of the local stack, in start order, with what "healthy" means for each."""

from __future__ import annotations

from collections.abc import Callable

from sandbox.stack import postgres
from sandbox.stack.celery import celery_programs
from sandbox.stack.errors import StackError
from sandbox.stack.settings import HOST, REPO_ROOT, StackSettings
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
        priority=100,
    )


def airflow_programs(settings: StackSettings) -> list[Program]:
    airflow = str(settings.bin_dir / "airflow")
    commands = {
        "api-server": [airflow, "api-server", "--host", "127.0.0.1", "--port", str(settings.ports["airflow"])],
        "scheduler": [airflow, "scheduler"],
        "dag-processor": [airflow, "dag-processor"],
        "triggerer": [airflow, "triggerer"],
    }
    return [Program(name=f"airflow-{name}", command=commands[name], group="airflow", priority=300)
            for name in AIRFLOW_COMPONENTS]


def bridge_programs(settings: StackSettings) -> list[Program]:
    """The webhook bridge under gunicorn, then its relay, each started by ``sandbox.stack.scoped_exec`` with only
    what it may see (``bridge_environment``). The relay has no port: it is healthy once the bridge's ``/readyz``
    (which reads the relay's beat in the database, and checks the database and Airflow) says ready."""
    bridge_url = settings.stack_env()["BRIDGE_URL"]
    gunicorn_conf = REPO_ROOT / "webhook_bridge" / "gunicorn.conf.py"

    def scoped(name: str, command: list[str]) -> list[str]:
        return [str(settings.python), "-m", "sandbox.stack.scoped_exec", name, *command]

    return [
        Program(name="webhook-bridge",
                command=scoped("webhook-bridge", [str(settings.bin_dir / "gunicorn"), "-c", str(gunicorn_conf),
                                                  "--bind", f"127.0.0.1:{settings.ports['bridge']}"]),
                with_runtime_env=False, health_url=f"{bridge_url}/healthz", port_name="bridge"),
        Program(name="webhook-relay", command=scoped("webhook-relay", [str(settings.python), "-m",
                                                                       "webhook_bridge.relay"]),
                with_runtime_env=False, health_url=f"{bridge_url}/readyz"),
    ]


# What the bridge's processes see besides their database URL and their behaviour settings (the BRIDGE_* variables
# and vdi.settings' table): the internet-facing bridge its webhook secrets, both Airflow's API credentials. No
# Jira, Leostream or AWS credential, no Airflow connection, no other database's password.
BRIDGE_PROCESS_SECRETS = {
    "webhook-bridge": ("JIRA_WEBHOOK_SECRET", "JIRA_WEBHOOK_PREVIOUS_SECRETS", "AIRFLOW_API_URL", "AIRFLOW_USERNAME",
                       "AIRFLOW_PASSWORD"),
    "webhook-relay": ("AIRFLOW_API_URL", "AIRFLOW_USERNAME", "AIRFLOW_PASSWORD"),
}
# Taken from supervisord's own environment: what a process needs to run at all.
BRIDGE_PROCESS_BASE = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PROMETHEUS_MULTIPROC_DIR")


def bridge_database_url(settings: StackSettings) -> str:
    """The bridge's database URL: ``BRIDGE_DATABASE_URL``; else, with the embedded database, its own role
    (``postgres.BRIDGE_ROLE``, which may touch only the deliveries and the relay's tables); else the app's URL."""
    if explicit := settings.environ.get("BRIDGE_DATABASE_URL"):
        return explicit
    if settings.environ.get("VDI_DATABASE_URL"):
        return settings.vdi_database_url
    password = postgres.bridge_password(settings.secrets["postgres_superuser_password"])
    return f"postgresql://{postgres.BRIDGE_ROLE}:{password}@{HOST}:{settings.ports['postgres']}/vdi"


def bridge_environment(settings: StackSettings, program: str) -> dict[str, str]:
    """The whole environment of the bridge process ``program`` (``webhook-bridge`` or ``webhook-relay``)."""
    from vdi.settings import SETTINGS

    values = {**settings.environ, **settings.runtime_env()}
    behaviour = {setting.variable for setting in SETTINGS} - {"VDI_DATABASE_URL"}
    env = {key: values[key] for key in BRIDGE_PROCESS_BASE if key in settings.environ}
    env.update({key: value for key, value in values.items() if key.startswith("BRIDGE_") or key in behaviour})
    env.update({key: values[key] for key in BRIDGE_PROCESS_SECRETS[program] if values.get(key)})
    if program != "webhook-bridge":
        env.pop("BRIDGE_WEBHOOK_SECRET_ID", None)
    elif env.get("BRIDGE_WEBHOOK_SECRET_ID"):
        # Where to read it; the credentials are the bridge's own (a profile or role), never the stack's AWS keys.
        env.update({key: values[key] for key in ("AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL") if values.get(key)})
    env["BRIDGE_DATABASE_URL"] = bridge_database_url(settings)
    return env


def service_programs(settings: StackSettings) -> list[Program]:
    """Programs started once Airflow is healthy (sandboxes, moto, the webhook bridge and its relay), in start order.

    Each one names a ``health_url``; those with a ``port_name`` listen on ``settings.ports[<port name>]``.
    """
    return [*sandbox_programs(settings), *bridge_programs(settings)]


def sandbox_programs(settings: StackSettings) -> list[Program]:
    """moto (EC2, S3, Secrets Manager, STS, IAM) and the Leostream and Jira sandboxes, in start order."""
    python, host = str(settings.python), "127.0.0.1"
    programs = [
        # moto's server with the EC2 fault hook and client-token memory (sandbox/aws), in one process.
        Program(name="moto", command=[python, "-m", "sandbox.aws", "--host", host, "--port",
                                      str(settings.ports["moto"])],
                health_url=f"{settings.url('moto')}/moto-api/", port_name="moto"),
        Program(name="leostream-sandbox", command=[python, "-m", "sandbox.leostream", "--host", host, "--port",
                                                   str(settings.ports["leostream"])],
                health_url=f"{settings.url('leostream')}/_sandbox/health", port_name="leostream"),
        Program(name="jira-sandbox", command=[python, "-m", "sandbox.jira", "--host", host, "--port",
                                              str(settings.ports["jira"])],
                health_url=f"{settings.url('jira')}/rest/api/2/serverInfo", port_name="jira"),
    ]
    # A system given for real (settings.real_systems) has no stand-in.
    system_of = {"moto": "aws", "leostream-sandbox": "leostream", "jira-sandbox": "jira"}
    return [program for program in programs if settings.sandboxed(system_of[program.name])]


def post_start_steps(settings: StackSettings) -> list[Callable[[StackSettings], None]]:
    """Steps run once every program is healthy and ``stack.env`` is written (e.g. register the Jira webhook).

    Each raises ``StackError`` with a one-line cause when it fails.
    """
    from sandbox.seed import seed_local_services

    # Real services are set up by their owners (docs/real-services.md): only sandboxes are registered and seeded.
    steps = [register_jira_webhook] if settings.sandboxed("jira") else []
    if settings.sandboxed("leostream") and settings.sandboxed("aws"):
        steps.append(seed_local_services)
    return steps + ([run_demo] if settings.all_sandboxed else [])


def run_demo(settings: StackSettings) -> None:
    """File a demo ticket and follow it to "ready" (``VDI_DEMO=0`` skips it)."""
    if settings.environ.get("VDI_DEMO", "1") == "0":
        return
    from sandbox.demo import run_demo as demo

    if not demo(settings):
        raise DemoNotReady("the demo desktop did not become ready (see above); the stack is left running")


class DemoNotReady(StackError):
    """The stack is up but the demo request did not reach "ready"."""


def register_jira_webhook(settings: StackSettings) -> None:
    """Point the Jira sandbox's admin webhook at the bridge, signed with ``JIRA_WEBHOOK_SECRET`` (idempotent)."""
    from vdi.jira_webhooks import RegistrationError, register_bridge_webhook

    env = settings.stack_env()
    try:
        register_bridge_webhook(env["JIRA_URL"], env["JIRA_USER"], env["JIRA_TOKEN"], env["BRIDGE_URL"],
                                env["JIRA_WEBHOOK_SECRET"])
    except RegistrationError as error:
        raise StackError(f"registering the Jira webhook: {error}") from None


def all_programs(settings: StackSettings) -> list[Program]:
    programs = [postgres_program(settings)] if settings.embedded_postgres_needed else []
    return programs + airflow_programs(settings) + celery_programs(settings) + service_programs(settings)


def ports_in_use(settings: StackSettings) -> dict[str, int]:
    """The stack's ports that its own programs will listen on."""
    names = ["airflow"] + (["postgres"] if settings.embedded_postgres_needed else [])
    names += ["redis"] if settings.local_redis_needed else []
    names += [program.port_name for program in service_programs(settings) if program.port_name]
    return {name: settings.ports[name] for name in names}

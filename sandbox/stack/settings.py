"""Effective settings of the local stack: paths, ports, generated secrets and ``.local/stack.env``.

Every value can be overridden from the environment; generated secrets are kept in ``.local/secrets.json``
so a restarted stack keeps its passwords and its data.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"

# The keys of .local/stack.env, in the order DESIGN.md lists them.
STACK_ENV_KEYS = (
    "AIRFLOW_API_URL",
    "AIRFLOW_USERNAME",
    "AIRFLOW_PASSWORD",
    "BRIDGE_URL",
    "JIRA_URL",
    "JIRA_USER",
    "JIRA_TOKEN",
    "JIRA_WEBHOOK_SECRET",
    "LEOSTREAM_URL",
    "LEOSTREAM_USER",
    "LEOSTREAM_PASSWORD",
    "AWS_ENDPOINT_URL",
    "VDI_DATABASE_URL",
)

# name -> (environment variable that overrides it, default port)
DEFAULT_PORTS = {
    "postgres": ("VDI_PG_PORT", 5433),
    "airflow": ("VDI_AIRFLOW_PORT", 8080),
    "bridge": ("VDI_BRIDGE_PORT", 8000),
    "jira": ("VDI_JIRA_PORT", 8081),
    "leostream": ("VDI_LEOSTREAM_PORT", 8082),
    "moto": ("VDI_MOTO_PORT", 5000),
    "redis": ("VDI_REDIS_PORT", 6379),
}


@dataclass(frozen=True)
class StackSetting:
    """One variable the stack launcher reads (beyond the ports and ``stack.env`` keys)."""

    variable: str
    default: str
    meaning: str


CELERY_WORKERS = StackSetting("VDI_CELERY_WORKERS", "2",
                              "Celery worker programs started with `AIRFLOW__CORE__EXECUTOR=CeleryExecutor`")
STACK_SETTINGS = (CELERY_WORKERS,)

# Any one of these variables given makes the system real: its sandbox (or moto) does not start.
REAL_SWITCHES = {
    "jira": ("JIRA_URL", "AIRFLOW_CONN_JIRA_DEFAULT"),
    "leostream": ("LEOSTREAM_URL", "AIRFLOW_CONN_LEOSTREAM_DEFAULT"),
    "aws": ("AIRFLOW_CONN_AWS_DEFAULT",),
}
SYSTEMS = tuple(REAL_SWITCHES)
# With a secrets backend the connections live there: every system is real.
SECRETS_BACKEND = "AIRFLOW__SECRETS__BACKEND"
# The stack.env keys that describe each system; for a real one, the URL's companions are required unless the
# connection is given whole (the switch after the URL) or lives in the secrets backend.
_SYSTEM_KEYS = {
    "jira": ("JIRA_URL", "JIRA_USER", "JIRA_TOKEN"),
    "leostream": ("LEOSTREAM_URL", "LEOSTREAM_USER", "LEOSTREAM_PASSWORD"),
    "aws": ("AWS_ENDPOINT_URL",),
}
MAX_CELERY_WORKERS = 8
# Task slots of the local stack: 2 cores, where Airflow's default 32 would fork 32 LocalExecutor workers.
LOCAL_PARALLELISM = 8
# Seconds a task process may go on after its final state (Airflow's [core] task_success_overtime): a failure
# callback's Jira report may take VDI_FAILURE_REPORT_WAIT_S (default 240) plus its other calls, and Airflow's
# default of 20 s kills the callback and tries the task again.
TASK_OVERTIME_S = 400


def real_systems(environ: Mapping[str, str]) -> dict[str, str]:
    """system -> the variable that makes it real; the systems left out run as sandboxes."""
    if environ.get(SECRETS_BACKEND):
        return dict.fromkeys(SYSTEMS, SECRETS_BACKEND)
    return {system: given for system, switches in REAL_SWITCHES.items()
            if (given := next((v for v in switches if environ.get(v)), None))}


def real_services_problems(environ: Mapping[str, str]) -> list[str]:
    """What keeps the given real-services settings from working, one line each (empty: nothing)."""
    real = real_systems(environ)
    problems = []
    for system in ("jira", "leostream"):
        url, *companions = _SYSTEM_KEYS[system]
        if environ.get(url) and not environ.get(REAL_SWITCHES[system][1]) and not environ.get(SECRETS_BACKEND):
            problems += [f"{needed} is missing ({url} is given)" for needed in companions if not environ.get(needed)]
    if ("leostream" in real) != ("aws" in real):
        real_one, sandbox = ("leostream", "aws") if "leostream" in real else ("aws", "leostream")
        problems.append(f"{real_one} is real ({real[real_one]} is given) but {sandbox} is not: the Leostream sandbox "
                        f"reads only moto, a real broker only real AWS; give both "
                        f"({' or '.join(REAL_SWITCHES[sandbox])}) or neither")
    return problems


_GENERATED_SECRETS = {
    "postgres_superuser_password": lambda: secrets.token_urlsafe(18),
    "airflow_db_password": lambda: secrets.token_urlsafe(18),
    "vdi_db_password": lambda: secrets.token_urlsafe(18),
    "airflow_password": lambda: secrets.token_urlsafe(18),
    "jwt_secret": lambda: secrets.token_urlsafe(48),
    "fernet_key": lambda: Fernet.generate_key().decode(),
    "jira_token": lambda: secrets.token_urlsafe(24),
    "jira_webhook_secret": lambda: secrets.token_urlsafe(32),
    "leostream_password": lambda: secrets.token_urlsafe(18),
    "redis_password": lambda: secrets.token_urlsafe(18),
}


def write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only (it holds passwords)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def read_stack_env(path: Path) -> dict[str, str]:
    """The ``KEY=value`` lines of a ``stack.env`` file (as ``write_stack_env`` writes them)."""
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def load_or_create_secrets(path: Path) -> dict[str, str]:
    """The stack's generated secrets, created once and then reused."""
    stored = json.loads(path.read_text()) if path.exists() else {}
    missing = {name: make() for name, make in _GENERATED_SECRETS.items() if name not in stored}
    if missing:
        stored.update(missing)
        write_private(path, json.dumps(stored, indent=2) + "\n")
    return stored


@dataclass
class StackSettings:
    """Everything the launcher needs to know, resolved once from the environment."""

    local_dir: Path
    ports: dict[str, int]
    secrets: dict[str, str]
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    python: Path = field(default_factory=lambda: Path(sys.executable))
    # Values learned while starting (e.g. from the app database), passed to the processes started later.
    learned: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> "StackSettings":
        environ = dict(os.environ if environ is None else environ)
        local_dir = Path(environ.get("VDI_LOCAL_DIR") or REPO_ROOT / ".local").resolve()
        ports = {}
        for name, (variable, default) in DEFAULT_PORTS.items():
            raw = environ.get(variable, str(default))
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise ValueError(f"{variable}={raw!r} is not a TCP port number")
            ports[name] = int(raw)
        workers = environ.get(CELERY_WORKERS.variable, CELERY_WORKERS.default)
        if not workers.isdigit() or not 0 < int(workers) <= MAX_CELERY_WORKERS:
            raise ValueError(f"{CELERY_WORKERS.variable}={workers!r} is not a number of workers from 1 to "
                             f"{MAX_CELERY_WORKERS}")
        return cls(local_dir, ports, load_or_create_secrets(local_dir / "secrets.json"), environ)

    # --- sandboxes or real services, executor ----------------------------------------------------------
    @property
    def real(self) -> dict[str, str]:
        """system -> the variable that makes it real (``real_systems``)."""
        return real_systems(self.environ)

    def sandboxed(self, system: str) -> bool:
        return system not in self.real

    @property
    def all_sandboxed(self) -> bool:
        return not self.real

    @property
    def uses_celery(self) -> bool:
        """``AIRFLOW__CORE__EXECUTOR`` names the CeleryExecutor (alone, or among several executors)."""
        executors = self.environ.get("AIRFLOW__CORE__EXECUTOR", "").split(",")
        return any(name.strip().rsplit(":", 1)[-1].rsplit(".", 1)[-1] == "CeleryExecutor" for name in executors)

    @property
    def celery_workers(self) -> int:
        return int(self.environ.get(CELERY_WORKERS.variable, CELERY_WORKERS.default)) if self.uses_celery else 0

    @property
    def local_redis_needed(self) -> bool:
        """CeleryExecutor with no broker of the user's: the stack runs its own Redis."""
        return self.uses_celery and not self.environ.get("AIRFLOW__CELERY__BROKER_URL")

    @property
    def celery_broker_url(self) -> str:
        return self.environ.get("AIRFLOW__CELERY__BROKER_URL") or (
            f"redis://:{self.secrets['redis_password']}@{HOST}:{self.ports['redis']}/0")

    # --- paths -------------------------------------------------------------------------------------
    @property
    def logs_dir(self) -> Path:
        return self.local_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.local_dir / "run"

    @property
    def pgdata(self) -> Path:
        return self.local_dir / "pgdata"

    @property
    def airflow_home(self) -> Path:
        return self.local_dir / "airflow"

    @property
    def stack_env_path(self) -> Path:
        return self.local_dir / "stack.env"

    @property
    def runtime_env_path(self) -> Path:
        return self.run_dir / "runtime.json"

    @property
    def bin_dir(self) -> Path:
        return self.python.parent

    # --- databases ---------------------------------------------------------------------------------
    @property
    def embedded_postgres_needed(self) -> bool:
        """False only when both databases point elsewhere."""
        return not (self.environ.get("VDI_DATABASE_URL") and self.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"))

    def _embedded_url(self, scheme: str, role: str, password: str, database: str) -> str:
        return f"{scheme}://{role}:{password}@{HOST}:{self.ports['postgres']}/{database}"

    @property
    def superuser_url(self) -> str:
        return self._embedded_url("postgresql", "postgres", self.secrets["postgres_superuser_password"], "postgres")

    @property
    def vdi_database_url(self) -> str:
        return self.environ.get("VDI_DATABASE_URL") or self._embedded_url(
            "postgresql", "vdi", self.secrets["vdi_db_password"], "vdi"
        )

    @property
    def airflow_database_url(self) -> str:
        return self.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN") or self._embedded_url(
            "postgresql+psycopg2", "airflow", self.secrets["airflow_db_password"], "airflow"
        )

    # --- service URLs ------------------------------------------------------------------------------
    def url(self, service: str) -> str:
        return f"http://{HOST}:{self.ports[service]}"

    def stack_env(self) -> dict[str, str]:
        """The values of ``.local/stack.env``: the environment wins over the stack's own."""
        values = {
            "AIRFLOW_API_URL": self.url("airflow"),
            "AIRFLOW_USERNAME": "vdi",
            "AIRFLOW_PASSWORD": self.secrets["airflow_password"],
            "BRIDGE_URL": self.url("bridge"),
            "JIRA_URL": self.url("jira"),
            "JIRA_USER": "vdi-bot@studio.example",
            "JIRA_TOKEN": self.secrets["jira_token"],
            "JIRA_WEBHOOK_SECRET": self.secrets["jira_webhook_secret"],
            "LEOSTREAM_URL": self.url("leostream"),
            "LEOSTREAM_USER": "vdi-api",
            "LEOSTREAM_PASSWORD": self.secrets["leostream_password"],
            "AWS_ENDPOINT_URL": self.url("moto"),
            "VDI_DATABASE_URL": self.vdi_database_url,
        }
        # A real system's keys are the environment's, or left out: never a sandbox's address or generated token.
        real_keys = {key for system in self.real for key in _SYSTEM_KEYS[system]}
        return {key: self.environ.get(key) or values[key] for key in STACK_ENV_KEYS
                if self.environ.get(key) or key not in real_keys}

    def write_stack_env(self) -> None:
        lines = [f"{key}={value}" for key, value in self.stack_env().items()]
        write_private(self.stack_env_path, "\n".join(lines) + "\n")

    # --- the environment every stack process runs with --------------------------------------------
    def runtime_env(self) -> dict[str, str]:
        from sandbox.seed import CENTER_NAME  # seed.py imports this module
        from vdi.provider import DEFAULT_AUTH_SERVER

        stack = self.stack_env()
        airflow_url = stack["AIRFLOW_API_URL"]
        connections = {"AIRFLOW_CONN_VDI_DB": _postgres_connection(stack["VDI_DATABASE_URL"])}
        # A real system's connection is built only from its stack.env keys when given (else it is given whole,
        # or lives in the secrets backend); a sandbox's carries the sandbox's settings.
        sandbox_extras = {"jira": {"verify": False},
                          "leostream": {"center_name": CENTER_NAME, "auth_server": DEFAULT_AUTH_SERVER}}
        for system, sandbox_extra in sandbox_extras.items():
            url, login, password = _SYSTEM_KEYS[system]
            if url in stack:
                connections[f"AIRFLOW_CONN_{system.upper()}_DEFAULT"] = {
                    "conn_type": system, "host": stack[url], "login": stack.get(login),
                    "password": stack.get(password), "extra": sandbox_extra if self.sandboxed(system) else {},
                }
        sandbox_only = {}
        if self.sandboxed("aws"):
            connections["AIRFLOW_CONN_AWS_DEFAULT"] = {
                "conn_type": "aws", "login": "testing", "password": "testing",
                "extra": {"region_name": "us-east-1", "endpoint_url": stack["AWS_ENDPOINT_URL"]},
            }
            sandbox_only.update({
                "VDI_PLAYBOOK_BUCKET": "vdi-playbooks",
                # moto accepts any key; the sandboxes reach it the way the broker's instance role would.
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
            })
        if self.all_sandboxed:
            # Local sandboxes answer at once: poll and retry sooner than against the real services, and give a
            # failure report a minute of a Jira that refuses (a test's fault) rather than five.
            sandbox_only.update({"VDI_POKE_INTERVAL_S": "3", "VDI_RETRY_DELAY_S": "5", "VDI_TASK_RETRIES": "2",
                                 "VDI_FAILURE_REPORT_WAIT_S": "60"})
        celery = {}
        if self.uses_celery:
            celery = {
                "AIRFLOW__CELERY__BROKER_URL": self.celery_broker_url,
                # The same slots in all as the LocalExecutor's parallelism, shared out among the workers.
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(max(1, LOCAL_PARALLELISM // self.celery_workers)),
            }
        env = {
            "AIRFLOW_HOME": str(self.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(LOCAL_PARALLELISM),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # The connection form's "Test" button (and POST /api/v2/connections/test); off by default.
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__FERNET_KEY": self.secrets["fernet_key"],
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{airflow_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{stack['AIRFLOW_USERNAME']}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.airflow_home / "passwords.json"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.airflow_database_url,
            "AIRFLOW__API__BASE_URL": airflow_url,
            "AIRFLOW__API__PORT": str(self.ports["airflow"]),
            "AIRFLOW__API_AUTH__JWT_SECRET": self.secrets["jwt_secret"],
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.logs_dir / "airflow"),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            # A task process rides out an API server restart (tests/faults) instead of spending its try: 10
            # retries of the execution API with Airflow's randomised 1-90 s backoff, against its default 5.
            "AIRFLOW__WORKERS__EXECUTION_API_RETRIES": "10",
            "AIRFLOW__CORE__TASK_SUCCESS_OVERTIME": str(TASK_OVERTIME_S),
            "VDI_LOCAL_DIR": str(self.local_dir),
            **sandbox_only,
            **celery,
            **stack,
            **{key: json.dumps(value) for key, value in connections.items()},
            **self.learned,
        }
        # Settings the user exported win, so "any server through the environment" holds for Airflow too.
        env.update({k: v for k, v in self.environ.items() if k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "VDI_"))})
        return env

    def write_runtime_env(self) -> None:
        write_private(self.runtime_env_path, json.dumps(self.runtime_env(), indent=2) + "\n")
        write_private(self.airflow_home / "passwords.json", json.dumps(
            {self.stack_env()["AIRFLOW_USERNAME"]: self.stack_env()["AIRFLOW_PASSWORD"]}) + "\n")


def _postgres_connection(url: str) -> dict:
    """An Airflow connection (JSON form) for a postgresql:// URL; its parameters (``sslmode`` …) become extras."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    parts = urlsplit(url)
    return {
        "conn_type": "postgres",
        "host": parts.hostname or "",
        "port": parts.port,
        "login": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "schema": unquote(parts.path.lstrip("/")),
        "extra": dict(parse_qsl(parts.query)),
    }

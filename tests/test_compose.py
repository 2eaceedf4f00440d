"""docker-compose.yaml and the Dockerfile, checked by parsing them (no Docker engine here): the services the
stack needs, pinned images, health checks, real Airflow options, and the same environment contract as `make run`
(the settings tables of vdi.settings, webhook_bridge.settings and sandbox/stack/settings.py)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
import re
import shutil
import subprocess
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement

from sandbox.stack.settings import STACK_ENV_KEYS, StackSettings
from tests.conftest import REPO_ROOT
from tests.test_docs import RecordingEnviron
from vdi.settings import SETTINGS
from webhook_bridge.settings import from_environment

COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES = COMPOSE["services"]

AIRFLOW_SERVICES = {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer", "airflow-worker"}
STACK_SERVICES = {"postgres", "redis", *AIRFLOW_SERVICES, "webhook-bridge", "webhook-relay"}
SANDBOX_SERVICES = {"jira-sandbox", "leostream-sandbox", "moto", "sandbox-seed"}
ONE_SHOT = {"airflow-init", "sandbox-seed"}
# The local stack's Airflow settings that are about one machine, not the deployment: paths and ports of the
# checkout, its fast DAG-folder polling, its task slots sized for a 2-core machine, and its health-check server
# (the compose file turns that one on: the scheduler's health check reads it).
MACHINE_LOCAL = {"AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__PLUGINS_FOLDER", "AIRFLOW__API__PORT",
                 "AIRFLOW__LOGGING__BASE_LOG_FOLDER", "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL",
                 "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL", "AIRFLOW__CORE__PARALLELISM",
                 "AIRFLOW__CELERY__WORKER_CONCURRENCY"}
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}|\$\$")


def interpolate(value: str) -> str:
    """``value`` as Compose sees it with nothing set in the environment: every ``${VAR:-default}`` its default."""
    return INTERPOLATION.sub(lambda m: "$" if m.group(0) == "$$" else (m.group(2) or ""), value)


def environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment") or {}
    return {key: interpolate(str(value)) for key, value in env.items()}


def variables_read_by(module_source: str) -> set[str]:
    """The names a module reads with ``os.environ.get("NAME" ...)``."""
    return set(re.findall(r'os\.environ\.get\("(\w+)"', module_source))


def bridge_reads() -> set[str]:
    """Every variable the bridge's settings read: with the environment empty, and with the webhook secret taken
    from Secrets Manager (stopped before any call leaves the process)."""
    from unittest import mock

    import boto3
    from botocore.exceptions import BotoCoreError, NoRegionError

    asked = set()
    for given in ({}, {"BRIDGE_WEBHOOK_SECRET_ID": "vdi/webhook"}):
        environ = RecordingEnviron()
        environ.get = lambda key, default=None, environ=environ, given=given: (  # noqa: E731
            environ.asked.add(key) or given.get(key, default))
        with mock.patch.object(boto3, "client", side_effect=NoRegionError()):
            try:
                from_environment(environ)
            except (BotoCoreError, RuntimeError):
                pass
        asked |= environ.asked
    return asked


# The bridge's database role: the one migration 0008 grants the deliveries and relay tables.
BRIDGE_ROLE = re.search(r"rolname = '(\w+)'", (REPO_ROOT / "plugins/vdi/store/migrations/0008_bridge_role.sql")
                        .read_text()).group(1)
GUNICORN_READS = variables_read_by((REPO_ROOT / "webhook_bridge" / "gunicorn.conf.py").read_text())


def test_the_stack_has_the_services_the_issue_names_and_the_sandbox_profile_the_stand_ins():
    assert STACK_SERVICES <= set(SERVICES)
    assert all("profiles" not in SERVICES[name] for name in STACK_SERVICES)
    assert SANDBOX_SERVICES <= set(SERVICES)
    assert all(SERVICES[name].get("profiles") == ["sandbox"] for name in SANDBOX_SERVICES)
    assert set(SERVICES) == STACK_SERVICES | SANDBOX_SERVICES


def test_airflow_runs_on_celery_with_redis_and_postgres_and_one_component_per_service():
    env = environment("airflow-worker")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert urlsplit(env["AIRFLOW__CELERY__BROKER_URL"]).hostname == "redis"
    assert urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).hostname == "postgres"
    commands = {name: SERVICES[name].get("command") for name in AIRFLOW_SERVICES - {"airflow-init"}}
    assert commands == {"airflow-apiserver": "api-server", "airflow-scheduler": "scheduler",
                        "airflow-dag-processor": "dag-processor", "airflow-triggerer": "triggerer",
                        "airflow-worker": "celery worker"}
    for name in AIRFLOW_SERVICES:
        volumes = SERVICES[name]["volumes"]
        assert any(v.endswith("/dags:/opt/airflow/dags") for v in volumes)
        assert any(v.endswith("/include:/opt/airflow/include") for v in volumes)


def test_every_image_is_built_here_or_pinned_to_a_release():
    version = re.search(r'^version = "(.+)"$', (REPO_ROOT / "pyproject.toml").read_text(), re.M).group(1)
    for name, service in SERVICES.items():
        image = interpolate(service["image"])
        if "build" in service:
            assert service["build"] == ".", name
            assert image == f"vdi-studios:{version}", f"{name}: the image built here is tagged {image}"
            continue
        # A release (PostgreSQL numbers its releases major.minor), never a moving tag like `latest` or `16`.
        assert re.fullmatch(r"[\w./-]+:\d+\.\d+(?:\.\d+)?(?:-[\w.]+)?", image), f"{name} runs an unpinned {image}"


def test_the_dockerfile_extends_the_official_image_of_the_locked_airflow_with_the_lock():
    dockerfile = DOCKERFILE.read_text()
    base = re.search(r"^FROM apache/airflow:(\S+)-python(\d+\.\d+)$", dockerfile, re.M)
    assert base, "the Dockerfile must start FROM apache/airflow:<version>-python<X.Y>"
    locked = {Requirement(line).name: str(Requirement(line).specifier).removeprefix("==")
              for line in (REPO_ROOT / "requirements.lock").read_text().splitlines()
              if line and not line.startswith((" ", "#"))}
    assert base.group(1) == locked["apache-airflow"]
    makefile_versions = re.search(r"^PYTHON_VERSIONS := (.+)$", (REPO_ROOT / "Makefile").read_text(), re.M)
    assert base.group(2) in makefile_versions.group(1).split()
    assert re.search(r"^RUN pip install .*-r /opt/airflow/requirements\.lock$", dockerfile, re.M)
    assert re.search(r"^RUN pip install .*--no-deps -e /opt/airflow", dockerfile, re.M)


def test_the_build_context_holds_everything_the_dockerfile_copies():
    allowed = {line[1:].rstrip("/") for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    copied = re.findall(r"^COPY (?:--\S+ )*(\S+) \S+$", DOCKERFILE.read_text(), re.M)
    assert copied and set(copied) <= allowed
    assert all((REPO_ROOT / path).exists() for path in copied)


def test_every_long_running_service_has_a_health_check_and_one_shots_run_once():
    for name, service in SERVICES.items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", name
        else:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    dependants = [s for s in SERVICES.values() if "airflow-init" in (s.get("depends_on") or {})]
    assert all(s["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully" for s in dependants)


def test_every_airflow_option_the_compose_file_sets_is_a_current_airflow_option():
    from airflow.configuration import conf

    conf.load_providers_configuration()
    description = conf.configuration_description
    deprecated = {(section, key) for section, key, _ in conf.deprecated_options.values()}
    for name in SERVICES:
        for variable in environment(name):
            if not variable.startswith("AIRFLOW__"):
                continue
            section, key = (part.lower() for part in variable.removeprefix("AIRFLOW__").split("__", 1))
            assert key in description.get(section, {}).get("options", {}), f"{name}: {variable} is no option"
            assert (section, key) not in deprecated, f"{name}: {variable} is deprecated"


def test_every_vdi_bridge_and_jira_variable_is_one_the_settings_tables_know():
    known = ({setting.variable for setting in SETTINGS} | bridge_reads() | set(STACK_ENV_KEYS) | GUNICORN_READS
             | variables_read_by((REPO_ROOT / "sandbox" / "jira" / "__main__.py").read_text().replace(
                 "env.get(", "os.environ.get(")))
    ours = re.compile(r"^(?:VDI|BRIDGE|JIRA)_")
    named = {key for name in SERVICES for key in (SERVICES[name].get("environment") or {})}
    named |= {m.group(1) for m in INTERPOLATION.finditer(COMPOSE_FILE.read_text()) if m.group(1)}
    unknown = sorted(v for v in named if ours.match(v) and v not in known)
    assert not unknown, f"the compose file sets variables no settings table knows: {unknown}"


@pytest.mark.parametrize("service", ["webhook-bridge", "webhook-relay"])
def test_the_bridge_processes_get_only_what_the_bridge_reads(service):
    env = environment(service)
    allowed = bridge_reads() | (GUNICORN_READS if service == "webhook-bridge" else set())
    assert set(env) <= allowed, f"{service} gets {sorted(set(env) - allowed)}, which it does not read"
    assert {"JIRA_WEBHOOK_SECRET", "VDI_DATABASE_URL", "AIRFLOW_API_URL", "AIRFLOW_PASSWORD"} <= set(env)
    # Its own database role, the one migration 0008 grants only the deliveries and relay tables.
    assert urlsplit(env["VDI_DATABASE_URL"]).username == BRIDGE_ROLE
    roles = interpolate(COMPOSE["configs"]["postgres-roles"]["content"])
    assert re.search(rf"CREATE ROLE {BRIDGE_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD "
                     rf"'{re.escape(urlsplit(env['VDI_DATABASE_URL']).password)}'", roles)


def test_airflow_gets_no_webhook_secret_and_its_connections_are_the_local_stacks(tmp_path):
    common = environment("airflow-scheduler")
    assert not {"JIRA_WEBHOOK_SECRET", "JIRA_WEBHOOK_PREVIOUS_SECRETS"} & set(common)
    local = StackSettings.from_environment({"VDI_LOCAL_DIR": str(tmp_path),
                                            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor"}).runtime_env()
    missing = {k for k in local if k.startswith("AIRFLOW__")} - set(common) - MACHINE_LOCAL
    assert not missing, f"`make run` sets Airflow options the compose stack leaves out: {sorted(missing)}"
    local_connections = {k for k in local if k.startswith("AIRFLOW_CONN_")}
    assert local_connections == {k for k in common if k.startswith("AIRFLOW_CONN_")}
    from airflow.models.connection import Connection

    for variable in local_connections:
        value = common[variable]
        ours = Connection.from_json(value, conn_id="c") if value.startswith("{") else Connection(uri=value)
        assert ours.conn_type == json.loads(local[variable])["conn_type"], variable


# The options whose value the product's own behaviour rests on: a failure report outlives the task's overtime,
# and a task process rides out an API server restart (docs/configuration.md). Compose must not drift from them.
BEHAVIOUR = ("AIRFLOW__CORE__TASK_SUCCESS_OVERTIME", "AIRFLOW__WORKERS__EXECUTION_API_RETRIES")


@pytest.mark.parametrize("option", BEHAVIOUR)
def test_every_airflow_service_gets_the_local_stacks_value_of_an_option_the_product_relies_on(option, tmp_path):
    local = StackSettings.from_environment({"VDI_LOCAL_DIR": str(tmp_path)}).runtime_env()
    given = {name: environment(name).get(option) for name in AIRFLOW_SERVICES}
    assert given == dict.fromkeys(AIRFLOW_SERVICES, local[option])


def test_the_sandbox_profile_is_wired_to_itself():
    airflow = environment("airflow-worker")
    jira = json.loads(airflow["AIRFLOW_CONN_JIRA_DEFAULT"])
    leostream = json.loads(airflow["AIRFLOW_CONN_LEOSTREAM_DEFAULT"])
    sandbox_jira, sandbox_leostream = environment("jira-sandbox"), environment("leostream-sandbox")
    assert (jira["host"], jira["login"], jira["password"]) == (
        sandbox_jira["JIRA_URL"], sandbox_jira["JIRA_USER"], sandbox_jira["JIRA_TOKEN"])
    assert (leostream["host"], leostream["login"], leostream["password"]) == (
        sandbox_leostream["LEOSTREAM_URL"], sandbox_leostream["LEOSTREAM_USER"],
        sandbox_leostream["LEOSTREAM_PASSWORD"])
    from airflow.models.connection import Connection

    aws = Connection(uri=airflow["AIRFLOW_CONN_AWS_DEFAULT"]).extra_dejson
    moto = sandbox_leostream["AWS_ENDPOINT_URL"]
    assert aws["endpoint_url"] == moto == environment("sandbox-seed")["AWS_ENDPOINT_URL"]
    assert environment("sandbox-seed")["JIRA_WEBHOOK_SECRET"] == environment("webhook-bridge")["JIRA_WEBHOOK_SECRET"]
    # Every http:// address in the file is a service of the file, on the port that service listens on.
    for url in re.findall(r"http://[\w.-]+:\d+", interpolate(COMPOSE_FILE.read_text())):
        host, port = urlsplit(url).hostname, str(urlsplit(url).port)
        if host == "localhost":
            continue
        assert host in SERVICES, f"{url} names no service"
        listens = json.dumps(SERVICES[host].get("command")) + json.dumps(SERVICES[host].get("ports", []))
        assert port in listens, f"{url}: {host} listens elsewhere"


def test_the_sandbox_seed_calls_the_seeding_and_registration_functions_as_they_are():
    script = SERVICES["sandbox-seed"]["command"][2]
    tree = ast.parse(script)
    imported = {alias.asname or alias.name: importlib.import_module(node.module)
                for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    called = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in imported]
    assert {call.func.id for call in called} == {"seed_aws", "seed_broker", "register_bridge_webhook"}
    for call in called:
        function = getattr(imported[call.func.id], call.func.id)
        inspect.signature(function).bind(*call.args, **{k.arg: k.value for k in call.keywords})
    keys = set(re.findall(r'env\["(\w+)"\]', script))
    assert keys <= set(environment("sandbox-seed")), sorted(keys - set(environment("sandbox-seed")))


def test_the_commands_run_what_exists_here():
    for name, service in SERVICES.items():
        command = service.get("command")
        text = command if isinstance(command, str) else " ".join(command or [])
        for module in re.findall(r"python -m ([\w.]+)", text.replace('"python", "-m", "', "python -m ")):
            assert importlib.util.find_spec(module), f"{name} runs python -m {module}, which does not exist"
        if isinstance(command, list) and command[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(command[2]), f"{name} runs python -m {command[2]}"
        for path in re.findall(r"/opt/airflow/([\w/.-]+\.\w+)", text):
            if not path.startswith(("auth/", "logs/")):
                assert (REPO_ROOT / path).exists(), f"{name} uses {path}, which does not exist"
        for volume in service.get("volumes", []):
            source = interpolate(volume).split(":", 1)[0]
            if source.startswith("./"):
                assert (REPO_ROOT / source).is_dir(), f"{name} mounts {source}, which does not exist"
    assert SERVICES["webhook-bridge"]["command"] == ["gunicorn", "-c", "webhook_bridge/gunicorn.conf.py"]


def test_docker_compose_config_accepts_the_file():
    docker = shutil.which("docker")
    if not docker or subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode:
        pytest.skip("no `docker compose` plugin on this machine: the file is checked by parsing only")
    for profile in ([], ["--profile", "sandbox"]):
        result = subprocess.run([docker, "compose", *profile, "-f", str(COMPOSE_FILE), "config", "--quiet"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr

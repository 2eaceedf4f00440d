"""Connection checks: one verdict per system the product needs (database, Jira, Leostream, AWS), each naming what
is missing. ``vdi check`` prints them; ``make run`` against real services runs them at start.

Settings come from where the DAGs take them: the Airflow connections (``AIRFLOW_CONN_*`` in ``env``, else the
``stack.env`` keys, else Airflow's own lookup, e.g. its secrets backend) and the ``VDI_*`` settings. Each system is
checked in a thread of its own with a deadline, so one that does not answer cannot hold the others up.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests

from vdi import settings as vdi_settings

SYSTEMS = ("database", "jira", "leostream", "aws")
# What the checks import, imported by check_all before their threads start: first imports racing in several
# threads deadlock on Python's module locks (Airflow's among them). Not at the top: the other `vdi` commands
# (request show, delivery redispatch) need none of it, and vdi.provision alone loads Airflow and the clients.
_CHECK_MODULES = ("airflow.sdk", "airflow.providers.amazon.aws.hooks.base_aws",
                  "airflow.providers.amazon.aws.utils.connection_wrapper", "psycopg", "vdi.catalog", "vdi.leostream",
                  "vdi.provision", "vdi.store.db", "vdi.store.migrate")
# A system's verdict may take this many calls' time limits (Jira's takes several calls) before it is given up.
DEADLINE_CALLS = 3
_DETAIL_CHARS = 300


@dataclass(frozen=True)
class Verdict:
    """One system's verdict; ``detail`` is one line, names what is missing, and holds no secret."""

    system: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{self.system}: {'ok' if self.ok else 'FAILED'}: {self.detail}"

    def as_dict(self) -> dict[str, Any]:
        return {"system": self.system, "ok": self.ok, "detail": self.detail}


class Missing(Exception):
    """What a check found missing or wrong, in one line."""


def check_all(env: Mapping[str, str] | None = None, *, timeout_s: float = 10.0,
              systems: Iterable[str] = SYSTEMS) -> list[Verdict]:
    """The verdicts of ``systems`` (default: all), in ``SYSTEMS`` order; never raises for a failing system. Each
    call to a service is bounded by ``timeout_s``, and the whole check by ``DEADLINE_CALLS`` times that."""
    env = os.environ if env is None else env
    wanted = [system for system in SYSTEMS if system in set(systems)]
    for module in _CHECK_MODULES:
        importlib.import_module(module)
    checks: dict[str, Callable[[Mapping[str, str], float], str]] = {
        "database": check_database, "jira": check_jira, "leostream": check_leostream, "aws": check_aws}
    results: dict[str, Verdict] = {}
    threads = []
    for system in wanted:
        thread = threading.Thread(target=_run, args=(system, checks[system], env, timeout_s, results),
                                  name=f"vdi-check-{system}", daemon=True)  # one that hangs must not hold exit
        thread.start()
        threads.append(thread)
    deadline_s = timeout_s * DEADLINE_CALLS
    give_up = time.monotonic() + deadline_s
    for thread in threads:
        thread.join(timeout=max(0.0, give_up - time.monotonic()))
    return [results.get(system) or Verdict(system, False, f"no verdict within {deadline_s:.0f} s")
            for system in wanted]


def _run(system: str, check, env: Mapping[str, str], timeout_s: float, results: dict[str, Verdict]) -> None:
    try:
        verdict = Verdict(system, True, check(env, timeout_s))
    except Missing as missing:
        verdict = Verdict(system, False, str(missing))
    except Exception as error:  # a verdict, not a traceback: the kind of error and its first line
        verdict = Verdict(system, False, f"{type(error).__name__}: {_first_line(error)}")
    results[system] = Verdict(system, verdict.ok, _clip(verdict.detail))


def _clip(detail: str) -> str:
    """At most ``_DETAIL_CHARS``, cut in the middle: a verdict's end says what to do."""
    if len(detail) <= _DETAIL_CHARS:
        return detail
    keep = (_DETAIL_CHARS - 1) // 2
    return f"{detail[:keep]}…{detail[-keep:]}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "no detail"


# --- where the settings come from --------------------------------------------------------------------------
def connection(conn_id: str, env: Mapping[str, str], from_stack_env: Callable[[Mapping[str, str]], dict | None]):
    """The Airflow connection ``conn_id``: ``AIRFLOW_CONN_<ID>`` in ``env`` (JSON or URI), else built from the
    ``stack.env`` keys, else Airflow's lookup (secrets backend, environment, metadata database)."""
    from airflow.sdk import BaseHook, Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    variable = f"AIRFLOW_CONN_{conn_id.upper()}"
    if raw := env.get(variable):
        try:
            if raw.lstrip().startswith("{"):
                return Connection.from_json(raw, conn_id=conn_id)
            return Connection.from_uri(raw, conn_id=conn_id)
        except Exception:  # its message may quote the value, password included
            raise Missing(f"{variable} is neither a connection's JSON nor its URI") from None
    if fields := from_stack_env(env):
        return Connection(conn_id=conn_id, **fields)
    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise Missing(f"no connection {conn_id} (set AIRFLOW_CONN_{conn_id.upper()} or the secrets backend)") from None


def _catalog(env: Mapping[str, str]):
    from vdi.catalog import load_catalog

    try:
        return load_catalog(vdi_settings.load(env).catalog_path)
    except (OSError, ValueError) as error:
        raise Missing(f"the desktop catalog cannot be read: {_first_line(error)}") from None


# --- database ----------------------------------------------------------------------------------------------
def database_url(env: Mapping[str, str]) -> str:
    """The app database as the DAGs reach it: ``VDI_DATABASE_URL``, else the connection ``vdi_db``."""
    from vdi.store.db import AIRFLOW_CONN_ID, connection_url

    if url := vdi_settings.load(env).database_url:
        return url
    return connection_url(connection(AIRFLOW_CONN_ID, env, lambda _: None))


@contextmanager
def app_database(env: Mapping[str, str], timeout_s: float):
    """An autocommit connection to the app database (``database_url``), connecting and each statement bounded by
    ``timeout_s``; ``Missing`` when it cannot connect."""
    import psycopg

    url = database_url(env)
    try:
        conn = psycopg.connect(url, connect_timeout=max(1, round(timeout_s)), autocommit=True)
    except psycopg.OperationalError as error:
        raise Missing(f"cannot connect to the app database: {_first_line(error)}") from None
    with conn:
        conn.execute("SELECT set_config('statement_timeout', %s, false)", (str(int(timeout_s * 1000)),))
        yield conn


def check_database(env: Mapping[str, str], timeout_s: float) -> str:
    """Connects; every migration of this version is applied."""
    import psycopg

    from vdi.store.migrate import available_migrations

    try:
        with app_database(env, timeout_s) as conn:
            where = f"database {conn.info.dbname} on {conn.info.host}:{conn.info.port} as {conn.info.user}"
            has_table = conn.execute("SELECT to_regclass('vdi_schema_version') IS NOT NULL").fetchone()[0]
            applied = {row[0] for row in conn.execute("SELECT version FROM vdi_schema_version")} if has_table else set()
    except psycopg.OperationalError as error:
        raise Missing(f"cannot connect to the app database: {_first_line(error)}") from None
    missing = [f"{m.version:04d}_{m.name}" for m in available_migrations() if m.version not in applied]
    if missing:
        raise Missing(f"{where}: migrations not applied: {', '.join(missing)} (run python -m vdi.store.migrate)")
    return f"{where}; schema at migration {max(applied):04d}"


# --- Jira --------------------------------------------------------------------------------------------------
def _jira_from_stack_env(env: Mapping[str, str]) -> dict | None:
    if not env.get("JIRA_URL"):
        return None
    return {"conn_type": "jira", "host": env["JIRA_URL"], "login": env.get("JIRA_USER"),
            "password": env.get("JIRA_TOKEN")}


def jira_connection(env: Mapping[str, str]):
    """The Airflow connection ``jira_default`` as the check finds it (see ``connection``)."""
    return connection("jira_default", env, _jira_from_stack_env)


def jira_session(conn) -> tuple[requests.Session, str, str]:
    """A session for the Jira connection (Cloud email + API token, or a Data Center token), its base URL and who
    it signs in as."""
    from vdi.http_retry import tls_verify

    session = requests.Session()
    session.verify = tls_verify((conn.extra_dejson or {}).get("verify"))
    if conn.login:
        session.auth = (conn.login, conn.password or "")
    else:
        session.headers["Authorization"] = f"Bearer {conn.password or ''}"
    base = (conn.host or "").rstrip("/")
    if not base:
        raise Missing("the Jira connection has no host (the site's URL)")
    return session, base, conn.login or "a personal access token"


def _jira_get(session: requests.Session, url: str, timeout_s: float, params=None) -> requests.Response:
    try:
        return session.get(url, params=params, timeout=timeout_s)
    except requests.RequestException as error:
        raise Missing(f"Jira at {url.split('/rest/')[0]} did not answer ({type(error).__name__})") from None


def needed_transitions(trigger: str) -> list[tuple[str, str]]:
    """The moves the product makes or tells people to make, as (from, to) status names (docs/operations.md)."""
    from vdi.provision import FAILED_STATUS, IN_PROGRESS_STATUS, READY_STATUS

    return [(trigger, IN_PROGRESS_STATUS), (IN_PROGRESS_STATUS, READY_STATUS), (trigger, FAILED_STATUS),
            (IN_PROGRESS_STATUS, FAILED_STATUS), (FAILED_STATUS, trigger)]


def needed_fields(settings: vdi_settings.VdiSettings) -> tuple[dict[str, str], dict[str, str]]:
    """The fields the product reads: required and optional, by setting variable → configured name or id."""
    required = {"VDI_JIRA_BUNDLE_FIELD": settings.jira_bundle_field, "VDI_JIRA_USER_FIELD": settings.jira_user_field}
    if settings.login_source == "field":
        required["VDI_JIRA_LOGIN_FIELD"] = settings.jira_login_field
    return required, {"VDI_JIRA_OS_FIELD": settings.jira_os_field}


def check_jira(env: Mapping[str, str], timeout_s: float) -> str:
    """Reachable, authenticated, the catalog's projects, the fields, the workflow's statuses and transitions."""
    settings = vdi_settings.load(env)
    conn = jira_connection(env)
    session, base, who = jira_session(conn)
    with session:
        info = _jira_get(session, f"{base}/rest/api/2/serverInfo", timeout_s)
        if not info.ok:
            raise Missing(f"Jira at {base} answered HTTP {info.status_code} to serverInfo")
        me = _jira_get(session, f"{base}/rest/api/2/myself", timeout_s)
        if me.status_code in (401, 403):
            raise Missing(f"Jira at {base} refused the credentials of {who} (HTTP {me.status_code})")
        if not me.ok:
            raise Missing(f"Jira at {base} answered HTTP {me.status_code} to myself")
        projects = {}
        for key in sorted(_catalog(env).projects):
            found = _jira_get(session, f"{base}/rest/api/2/project/{key}", timeout_s)
            if not found.ok:
                raise Missing(f"Jira project {key} (from the catalog) not found, or {who} may not browse it")
            projects[key] = found.json()
        fields = _jira_get(session, f"{base}/rest/api/2/field", timeout_s)
        if not fields.ok:
            raise Missing(f"Jira at {base} answered HTTP {fields.status_code} to the field list")
        required, optional = needed_fields(settings)
        known = {f["id"] for f in fields.json()} | {f["name"].lower() for f in fields.json()}
        absent = [f"{name!r} ({variable})" for variable, name in required.items()
                  if name not in known and name.lower() not in known]
        if absent:
            raise Missing(f"Jira has no field {', '.join(absent)}")
        notes = [f"no {name!r} field: requests get their bundle's default OS"
                 for name in optional.values() if name not in known and name.lower() not in known]
        workflows = [_check_workflow(session, base, project, settings.jira_trigger_status, timeout_s, who)
                     for project in projects.values()]
    summary = f"{base} as {who}; project {', '.join(projects)}; fields {', '.join(required.values())}; "
    return summary + "; ".join(workflows + notes)


def _check_workflow(session: requests.Session, base: str, project: dict, trigger: str, timeout_s: float,
                    who: str) -> str:
    """The project's workflow that holds the trigger status has every needed status and transition."""
    schemes = _jira_get(session, f"{base}/rest/api/2/workflowscheme/project", timeout_s,
                        params={"projectId": project["id"]})
    if schemes.status_code in (401, 403):
        return f"workflow not checked ({who} is not a Jira administrator)"
    if not schemes.ok:
        raise Missing(f"Jira answered HTTP {schemes.status_code} to the workflow scheme of {project['key']}")
    names = set()
    for association in schemes.json().get("values", []):
        scheme = association.get("workflowScheme", {})
        names |= set(scheme.get("issueTypeMappings", {}).values()) | {scheme.get("defaultWorkflow") or "jira"}
    found = _jira_get(session, f"{base}/rest/api/2/workflow/search", timeout_s,
                      params={"workflowName": sorted(names), "expand": "transitions,statuses", "maxResults": 50})
    if not found.ok:
        raise Missing(f"Jira answered HTTP {found.status_code} to the workflows of {project['key']}")
    gaps = {workflow["id"]["name"]: workflow_gaps(workflow, trigger) for workflow in found.json().get("values", [])}
    if not gaps:
        raise Missing(f"project {project['key']} has no classic workflow Jira shows")
    name, missing = min(gaps.items(), key=lambda item: len(item[1]))
    if missing:
        raise Missing(f"project {project['key']} workflow {name!r} lacks {', '.join(missing)}")
    return f"workflow {name!r} has the statuses and transitions"


def workflow_gaps(workflow: dict, trigger: str) -> list[str]:
    """What a workflow (as ``/workflow/search?expand=transitions,statuses`` gives it) lacks: statuses, then
    transitions; a global transition reaches its status from anywhere."""
    from vdi.provision import FAILED_STATUS, IN_PROGRESS_STATUS, READY_STATUS

    names = {status["id"]: status["name"] for status in workflow.get("statuses", [])}
    have = {name.casefold() for name in names.values()}
    wanted = [trigger, IN_PROGRESS_STATUS, READY_STATUS, FAILED_STATUS]
    missing = [f"status {name!r}" for name in wanted if name.casefold() not in have]
    moves = set()
    for transition in workflow.get("transitions", []):
        target = names.get(transition.get("to"), "").casefold()
        sources = transition.get("from") or []
        if transition.get("type") == "global":
            moves |= {(name.casefold(), target) for name in names.values()}
        moves |= {(names.get(source, "").casefold(), target) for source in sources}
    missing += [f"transition {source} -> {target}" for source, target in needed_transitions(trigger)
                if (source.casefold(), target.casefold()) not in moves]
    return missing


# --- Leostream ---------------------------------------------------------------------------------------------
def _leostream_from_stack_env(env: Mapping[str, str]) -> dict | None:
    if not env.get("LEOSTREAM_URL"):
        return None
    return {"conn_type": "leostream", "host": env["LEOSTREAM_URL"], "login": env.get("LEOSTREAM_USER"),
            "password": env.get("LEOSTREAM_PASSWORD")}


def check_leostream(env: Mapping[str, str], timeout_s: float) -> str:
    """Reachable, the API user signs in, the broker's AWS center exists (``LeostreamHook.test_connection``)."""
    from vdi.leostream import LeostreamHook

    class _Hook(LeostreamHook):
        """The hook on the connection resolved here rather than looked up again."""

        def __init__(self, resolved):
            super().__init__(resolved.conn_id)
            self._resolved = resolved

        @property
        def connection(self):
            return self._resolved

    ok, message = _Hook(connection("leostream_default", env, _leostream_from_stack_env)).test_connection()
    if not ok:
        raise Missing(f"Leostream: {message}")
    return message


# --- AWS ---------------------------------------------------------------------------------------------------
def _aws_from_stack_env(env: Mapping[str, str]) -> dict | None:
    keys = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_DEFAULT_REGION", "AWS_REGION")
    if not any(env.get(key) for key in keys):
        return None
    extra = {"region_name": env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION"),
             "endpoint_url": env.get("AWS_ENDPOINT_URL"), "aws_session_token": env.get("AWS_SESSION_TOKEN")}
    return {"conn_type": "aws", "login": env.get("AWS_ACCESS_KEY_ID"), "password": env.get("AWS_SECRET_ACCESS_KEY"),
            "extra": json.dumps({key: value for key, value in extra.items() if value})}


def aws_clients(conn, region: str, timeout_s: float) -> Callable[[str], Any]:
    """A factory of boto3 clients from an Airflow ``aws`` connection, as the Amazon provider builds them."""
    from airflow.providers.amazon.aws.hooks.base_aws import BaseSessionFactory
    from airflow.providers.amazon.aws.utils.connection_wrapper import AwsConnectionWrapper
    from botocore.config import Config

    wrapper = AwsConnectionWrapper(conn=conn)
    session = BaseSessionFactory(conn=wrapper, region_name=wrapper.region_name or region).create_session()
    config = Config(connect_timeout=timeout_s, read_timeout=timeout_s, retries={"max_attempts": 2})
    if wrapper.botocore_config:
        config = wrapper.botocore_config.merge(config)
    return lambda service: session.client(service, endpoint_url=wrapper.endpoint_url, config=config,
                                          region_name=wrapper.region_name or region)


def check_aws(env: Mapping[str, str], timeout_s: float) -> str:
    """Credentials work, the region is the catalog's, the catalog's images and subnets exist there."""
    from botocore.exceptions import BotoCoreError, ClientError

    catalog = _catalog(env)
    try:
        conn = connection("aws_default", env, _aws_from_stack_env)
    except Missing:  # no connection at all: boto3's default chain (e.g. the workers' instance role)
        from airflow.sdk import Connection

        conn = Connection(conn_id="aws_default", conn_type="aws")
    client = aws_clients(conn, catalog.region, timeout_s)
    try:
        identity = client("sts").get_caller_identity()
    except (ClientError, BotoCoreError) as error:
        raise Missing(f"AWS credentials do not work: {_first_line(error)}") from None
    ec2 = client("ec2")
    region = ec2.meta.region_name
    if region != catalog.region:
        raise Missing(f"the AWS connection's region is {region}, the catalog's {catalog.region}")
    images = sorted({image for bundle in catalog.bundles.values() for by_region in bundle.images.values()
                     for where, image in by_region.items() if where == region})
    absent = [image for image in images if not _exists(ec2.describe_images, "ImageIds", image, "Images")]
    subnets = sorted({bundle.subnet_id for bundle in catalog.bundles.values() if bundle.subnet_id})
    absent += [subnet for subnet in subnets if not _exists(ec2.describe_subnets, "SubnetIds", subnet, "Subnets")]
    if any(bundle.subnet_id is None for bundle in catalog.bundles.values()):
        default = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        if not default:
            absent.append("a default VPC (a bundle's subnet_id is null)")
    if absent:
        raise Missing(f"AWS account {identity['Account']} in {region} has no {', '.join(absent)} (from the catalog)")
    return (f"account {identity['Account']} in {region}; {len(images)} image(s) and "
            f"{len(subnets) or 'the default'} subnet(s) of the catalog exist")


def _exists(describe, parameter: str, resource_id: str, result_key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        return bool(describe(**{parameter: [resource_id]})[result_key])
    except ClientError as error:
        if error.response.get("Error", {}).get("Code", "").endswith(("NotFound", ".Malformed")):
            return False
        raise

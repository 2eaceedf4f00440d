"""The settings of the bridge and its relay: Flask config keys, each read from an environment variable unless given.

| key | environment variable | default |
|---|---|---|
| ``WEBHOOK_SECRETS`` | ``JIRA_WEBHOOK_SECRET`` (current) + ``JIRA_WEBHOOK_PREVIOUS_SECRETS`` (one per line); with ``BRIDGE_WEBHOOK_SECRET_ID`` set, that Secrets Manager secret's ``AWSCURRENT`` and ``AWSPREVIOUS`` versions instead (read at start, region ``AWS_DEFAULT_REGION``) | none: refuse all |
| ``DATABASE_URL`` | ``BRIDGE_DATABASE_URL`` (the bridge's own role, docs/security.md), else ``VDI_DATABASE_URL`` | required |
| ``AIRFLOW_API_URL`` / ``AIRFLOW_USERNAME`` / ``AIRFLOW_PASSWORD`` | same names | (the relay requires the URL) |
| ``MAX_CONTENT_LENGTH`` | ``BRIDGE_MAX_BODY_BYTES`` | 1 MiB |
| ``REPLAY_WINDOW_S`` | ``BRIDGE_REPLAY_WINDOW_S`` | 86400 (Jira retries for ~75 min; late deliveries up to ~30 min more) |
| ``CLOCK_SKEW_S`` | ``BRIDGE_CLOCK_SKEW_S`` | 300 (how far in the future a timestamp may be) |
| ``ROUTES`` | ``BRIDGE_ROUTES`` (JSON list, see ``events.Route``) | a move into ``VDI_JIRA_TRIGGER_STATUS`` → ``vdi_provision``; a *Desktop Removal* moved into ``VDI_JIRA_REMOVAL_STATUS`` → ``vdi_deprovision`` |
| ``PROJECTS`` / ``ISSUE_TYPES`` | ``BRIDGE_PROJECTS`` / ``BRIDGE_ISSUE_TYPES`` (comma-separated) | any |
| ``RELAY_THREADS`` | ``BRIDGE_RELAY_THREADS`` | 2 (triggers in flight at once, per relay process; see below) |
| ``SWEEP_INTERVAL_S`` | ``BRIDGE_SWEEP_INTERVAL_S`` | 5 (how often the relay looks for due deliveries unprompted) |
| ``RETRY_BASE_S`` / ``RETRY_MAX_S`` | ``BRIDGE_RETRY_BASE_S`` / ``BRIDGE_RETRY_MAX_S`` | 2 / 60 (a pending delivery is retried at least every minute) |
| ``AIRFLOW_TIMEOUT_S`` | ``BRIDGE_AIRFLOW_TIMEOUT_S`` | 5 |
| ``MISSING_DAG_GRACE_S`` | ``BRIDGE_MISSING_DAG_GRACE_S`` | 900 (how long a route's DAG may be missing, e.g. not parsed yet, before its deliveries are dead-lettered) |
| ``DB_POOL_MAX`` | ``BRIDGE_DB_POOL_MAX`` | 4 (per process: relay threads, health checks; not the recorder's) |
| ``DB_TIMEOUT_S`` | ``BRIDGE_DB_TIMEOUT_S`` | 3 (then 503) |

Two relay threads: Airflow's API server creates runs one at a time (``bench.airflow_trigger_rate``), so two
triggers in flight reach its rate and more only add latency. With several relay processes, keep their threads to
about two in all.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from vdi import settings as vdi_settings


def default_routes(trigger_status: str, removal_status: str = "Removal Requested",
                   removal_type: str = "Desktop Removal") -> list[dict]:
    """An issue moved into the DAG side's trigger status (or created in it) goes to vdi_provision, which reads the
    issue fresh and decides; a *Desktop Removal* issue moved into (or created in) the removal status goes to
    vdi_deprovision. The DAGs' own comments and transitions (In Progress, Ready, Failed, Removed) and people's
    edits start no run: one approval is one run, one removal ticket (or its Retry Removal) one removal. The
    product and a person may use the same Jira account, so the account is never what tells them apart."""
    return [{"moved_to": [trigger_status], "dag_id": "vdi_provision"},
            {"moved_to": [removal_status], "issue_types": [removal_type], "dag_id": "vdi_deprovision"}]


def _routes(env: Mapping[str, str]) -> list:
    """``BRIDGE_ROUTES`` (the first matching route wins), or the default routes; each route is checked when the
    bridge's router is built (``events.Router.from_config``)."""
    raw = env.get("BRIDGE_ROUTES")
    if not raw:
        settings = vdi_settings.load(env)
        return default_routes(settings.jira_trigger_status, settings.jira_removal_status)
    try:
        routes = json.loads(raw)
    except ValueError as error:
        raise ValueError(f"BRIDGE_ROUTES is not JSON: {error}") from None
    if not isinstance(routes, list):
        raise ValueError("BRIDGE_ROUTES is not a JSON list of routes")
    return routes


def secrets_manager_secrets(secret_id: str, environ: Mapping[str, str]) -> list[str]:
    """The secret's ``AWSCURRENT`` value and, once it was rotated, its ``AWSPREVIOUS`` one (Secrets Manager moves
    that label on every ``PutSecretValue``); credentials from the environment or the instance role. The calls are
    bounded: a bridge that cannot read its secrets fails to start rather than hang."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client("secretsmanager", region_name=environ.get("AWS_DEFAULT_REGION") or None,
                          endpoint_url=environ.get("AWS_ENDPOINT_URL") or None,
                          config=Config(**vdi_settings.SECRETS_MANAGER_CALL_LIMITS))
    values = []
    for stage in ("AWSCURRENT", "AWSPREVIOUS"):
        try:
            values.append(client.get_secret_value(SecretId=secret_id, VersionStage=stage)["SecretString"])
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if stage == "AWSPREVIOUS" and code == "ResourceNotFoundException":
                continue
            raise RuntimeError(f"cannot read the webhook secret {secret_id} ({stage}) from Secrets Manager: "
                               f"{code}") from None
        except BotoCoreError as error:
            raise RuntimeError(f"cannot reach Secrets Manager for the webhook secret {secret_id}: "
                               f"{type(error).__name__}") from None
    return [value for value in values if value.strip()]


def _secrets(environ: Mapping[str, str]) -> list[str]:
    if secret_id := environ.get("BRIDGE_WEBHOOK_SECRET_ID"):
        return secrets_manager_secrets(secret_id, environ)
    current = environ.get("JIRA_WEBHOOK_SECRET", "")
    previous = environ.get("JIRA_WEBHOOK_PREVIOUS_SECRETS", "").splitlines()
    return [secret for secret in [current, *previous] if secret.strip()]


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def from_environment(environ: Mapping[str, str] | None = None) -> dict:
    """Every setting as a Flask config key, from the environment (or ``environ``)."""
    env = os.environ if environ is None else environ

    def number(variable: str, default: float) -> float:
        raw = env.get(variable)
        return float(raw) if raw else default

    return {
        "WEBHOOK_SECRETS": _secrets(env),
        "DATABASE_URL": env.get("BRIDGE_DATABASE_URL") or env.get("VDI_DATABASE_URL"),
        "AIRFLOW_API_URL": env.get("AIRFLOW_API_URL"),
        "AIRFLOW_USERNAME": env.get("AIRFLOW_USERNAME"),
        "AIRFLOW_PASSWORD": env.get("AIRFLOW_PASSWORD"),
        "MAX_CONTENT_LENGTH": int(number("BRIDGE_MAX_BODY_BYTES", 1024 * 1024)),
        "REPLAY_WINDOW_S": number("BRIDGE_REPLAY_WINDOW_S", 86400),
        "CLOCK_SKEW_S": number("BRIDGE_CLOCK_SKEW_S", 300),
        "ROUTES": _routes(env),
        "PROJECTS": _csv(env.get("BRIDGE_PROJECTS", "")),
        "ISSUE_TYPES": _csv(env.get("BRIDGE_ISSUE_TYPES", "")),
        "RELAY_THREADS": int(number("BRIDGE_RELAY_THREADS", 2)),
        "SWEEP_INTERVAL_S": number("BRIDGE_SWEEP_INTERVAL_S", 5),
        "RETRY_BASE_S": number("BRIDGE_RETRY_BASE_S", 2),
        "RETRY_MAX_S": number("BRIDGE_RETRY_MAX_S", 60),
        "AIRFLOW_TIMEOUT_S": number("BRIDGE_AIRFLOW_TIMEOUT_S", 5),
        "MISSING_DAG_GRACE_S": number("BRIDGE_MISSING_DAG_GRACE_S", 900),
        "DB_POOL_MAX": int(number("BRIDGE_DB_POOL_MAX", 4)),
        "DB_TIMEOUT_S": number("BRIDGE_DB_TIMEOUT_S", 3),
    }

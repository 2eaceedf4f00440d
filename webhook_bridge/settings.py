"""The settings of the bridge and its relay: Flask config keys, each read from an environment variable unless given.

| key | environment variable | default |
|---|---|---|
| ``WEBHOOK_SECRETS`` | ``JIRA_WEBHOOK_SECRET`` (current) + ``JIRA_WEBHOOK_PREVIOUS_SECRETS`` (one per line) | none: refuse all |
| ``DATABASE_URL`` | ``VDI_DATABASE_URL`` | required |
| ``AIRFLOW_API_URL`` / ``AIRFLOW_USERNAME`` / ``AIRFLOW_PASSWORD`` | same names | (the relay requires the URL) |
| ``MAX_CONTENT_LENGTH`` | ``BRIDGE_MAX_BODY_BYTES`` | 1 MiB |
| ``REPLAY_WINDOW_S`` | ``BRIDGE_REPLAY_WINDOW_S`` | 86400 (Jira retries for ~75 min; late deliveries up to ~30 min more) |
| ``CLOCK_SKEW_S`` | ``BRIDGE_CLOCK_SKEW_S`` | 300 (how far in the future a timestamp may be) |
| ``ROUTES`` | ``BRIDGE_ROUTES`` (JSON list, see ``events.Route``) | a move into ``VDI_JIRA_TRIGGER_STATUS`` → ``vdi_provision`` |
| ``PROJECTS`` / ``ISSUE_TYPES`` | ``BRIDGE_PROJECTS`` / ``BRIDGE_ISSUE_TYPES`` (comma-separated) | any |
| ``RELAY_THREADS`` | ``BRIDGE_RELAY_THREADS`` | 2 (triggers in flight at once, per relay process; see below) |
| ``SWEEP_INTERVAL_S`` | ``BRIDGE_SWEEP_INTERVAL_S`` | 5 (how often the relay looks for due deliveries unprompted) |
| ``RETRY_BASE_S`` / ``RETRY_MAX_S`` | ``BRIDGE_RETRY_BASE_S`` / ``BRIDGE_RETRY_MAX_S`` | 2 / 60 (a pending delivery is retried at least every minute) |
| ``AIRFLOW_TIMEOUT_S`` | ``BRIDGE_AIRFLOW_TIMEOUT_S`` | 5 |
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


def default_routes(trigger_status: str) -> list[dict]:
    """An issue moved into the DAG side's trigger status (or created in it) goes to vdi_provision, which reads the
    issue fresh and decides. The DAG's own comments and transitions (In Progress, Ready, Failed) and people's edits
    start no run: one approval is one run. The product and a person may use the same Jira account, so the account
    is never what tells them apart."""
    return [{"moved_to": [trigger_status], "dag_id": "vdi_provision"}]


def _routes(env: Mapping[str, str]) -> list:
    """``BRIDGE_ROUTES`` (the first matching route wins), or the default routes; each route is checked when the
    bridge's router is built (``events.Router.from_config``)."""
    raw = env.get("BRIDGE_ROUTES")
    if not raw:
        return default_routes(vdi_settings.load(env).jira_trigger_status)
    try:
        routes = json.loads(raw)
    except ValueError as error:
        raise ValueError(f"BRIDGE_ROUTES is not JSON: {error}") from None
    if not isinstance(routes, list):
        raise ValueError("BRIDGE_ROUTES is not a JSON list of routes")
    return routes


def _secrets(environ: Mapping[str, str]) -> list[str]:
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
        "DATABASE_URL": env.get("VDI_DATABASE_URL"),
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
        "DB_POOL_MAX": int(number("BRIDGE_DB_POOL_MAX", 4)),
        "DB_TIMEOUT_S": number("BRIDGE_DB_TIMEOUT_S", 3),
    }

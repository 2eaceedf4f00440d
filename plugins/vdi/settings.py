"""The DAG side's settings: every ``VDI_*`` environment variable the tasks read, its default and meaning.

``SETTINGS`` is the one table (docs/configuration.md is checked against it); ``load()`` reads it into a frozen
``VdiSettings``. Cheap at DAG parse: it reads the environment and nothing else. Connections
(``jira_default``, ``leostream_default``, ``aws_default``, ``vdi_db``) carry the addresses and credentials;
these settings carry the behaviour.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Setting:
    """One row of the table: the attribute of ``VdiSettings``, its variable, default (as text) and meaning."""

    name: str
    variable: str
    default: str | None
    meaning: str
    parse: Callable[[str], Any] = str


def boolean(raw: str) -> bool:
    """A yes/no setting: true/false, yes/no, on/off or 1/0."""
    value = raw.strip().lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise ValueError(raw)


# botocore limits of every Secrets Manager call (Airflow's secrets backend and the bridge's webhook secrets)
SECRETS_MANAGER_CALL_LIMITS = {"connect_timeout": 3, "read_timeout": 5,
                               "retries": {"max_attempts": 3, "mode": "standard"}}

SETTINGS: tuple[Setting, ...] = (
    Setting("database_url", "VDI_DATABASE_URL", None,
            "App database URL; when unset, the Airflow connection `vdi_db` is used"),
    Setting("catalog_path", "VDI_CATALOG_PATH", None,
            "Desktop catalog YAML; when unset, `include/catalog.yaml`"),
    Setting("playbook_bucket", "VDI_PLAYBOOK_BUCKET", None,
            "S3 bucket the playbook bundle is published to; when unset, the bundle is embedded in the user data"),
    Setting("jira_bundle_field", "VDI_JIRA_BUNDLE_FIELD", "Desktop bundle",
            "Jira field (id or name) holding the desktop bundle"),
    Setting("jira_user_field", "VDI_JIRA_USER_FIELD", "Desktop user",
            "Jira field (id or name) holding the desktop's user; the reporter when empty"),
    Setting("jira_os_field", "VDI_JIRA_OS_FIELD", "Desktop OS",
            "Jira field (id or name) holding the optional operating system"),
    Setting("jira_trigger_status", "VDI_JIRA_TRIGGER_STATUS", "Approved",
            "Jira status in which a desktop request is provisioned"),
    Setting("jira_removal_status", "VDI_JIRA_REMOVAL_STATUS", "Removal Requested",
            "Jira status in which a desktop removal ticket is carried out"),
    Setting("jira_request_type", "VDI_JIRA_REQUEST_TYPE", "Desktop Request",
            "Jira issue type of desktop requests: a removal ticket's links to issues of this type name what it "
            "removes"),
    Setting("task_retries", "VDI_TASK_RETRIES", "3", "Retries of each task after its first try", int),
    Setting("retry_delay_s", "VDI_RETRY_DELAY_S", "30",
            "First retry delay in seconds (doubles each retry, at most 10 minutes)", float),
    Setting("poke_interval_s", "VDI_POKE_INTERVAL_S", "30", "Seconds between two checks of a waiting step", float),
    Setting("wait_timeout_s", "VDI_WAIT_TIMEOUT_S", "2700",
            "Seconds a waiting step waits before it fails", float),
    Setting("bootstrap_timeout_s", "VDI_BOOTSTRAP_TIMEOUT_S", "1800",
            "Seconds from launch for the desktop's first boot to report done before the request fails", float),
    Setting("task_timeout_s", "VDI_TASK_TIMEOUT_S", "600",
            "Execution timeout of each task that calls out (a waiting step's own wait is bounded apart)", float),
    Setting("retry_after_max_s", "VDI_RETRY_AFTER_MAX_S", "60",
            "Longest Retry-After honoured within one call; a longer one fails the attempt and Airflow retries", float),
    Setting("failure_report_wait_s", "VDI_FAILURE_REPORT_WAIT_S", "240",
            "Seconds a failure callback may keep retrying a Jira that is down or refusing (429, 503) to move the "
            "ticket to Failed and comment; keep it below Airflow's task_instance_heartbeat_timeout", float),
    Setting("lock_timeout_s", "VDI_LOCK_TIMEOUT_S", "30",
            "Seconds a step waits for a ticket's lock or a database statement before it fails", float),
    Setting("login_source", "VDI_LOGIN_SOURCE", "field",
            "Where a user's Leostream login comes from when Jira hides their email: `field`, `property`, `file` "
            "or `none` (the request fails with a comment)"),
    Setting("jira_login_field", "VDI_JIRA_LOGIN_FIELD", "Desktop login",
            "Jira field (id or name) holding the Leostream login, for `VDI_LOGIN_SOURCE=field`"),
    Setting("jira_login_property", "VDI_JIRA_LOGIN_PROPERTY", "vdi-desktop-login",
            "Jira user property holding the Leostream login, for `VDI_LOGIN_SOURCE=property`"),
    Setting("login_map_path", "VDI_LOGIN_MAP_PATH", None,
            "YAML or JSON file mapping Jira accountId to Leostream login, for `VDI_LOGIN_SOURCE=file`"),
    Setting("reconcile_schedule", "VDI_RECONCILE_SCHEDULE", "*/15 * * * *",
            "When vdi_reconcile runs: a cron expression or an Airflow preset (`@hourly`)"),
    Setting("reconcile_lookback_s", "VDI_RECONCILE_LOOKBACK_S", "86400",
            "Lost webhooks: how far back (seconds) the reconcile looks for tickets updated into a routed status",
            float),
    Setting("reconcile_lost_after_s", "VDI_RECONCILE_LOST_AFTER_S", "600",
            "Lost webhooks: seconds a ticket stays in a routed status with no run on it before it counts as lost",
            float),
    Setting("reconcile_max_fixes", "VDI_RECONCILE_MAX_FIXES", "25",
            "Most fixes of each kind one reconcile run makes; the rest wait for the next run", int),
    Setting("reconcile_terminate_orphans", "VDI_RECONCILE_TERMINATE_ORPHANS", "false",
            "Terminate instances tagged by VDI Studios that no live request owns (otherwise only reported)",
            boolean),
    Setting("reconcile_reprovision", "VDI_RECONCILE_REPROVISION", "false",
            "Provision again a ready desktop whose instance is gone or stopped (otherwise the requester is told)",
            boolean),
    Setting("reconcile_stuck_in_progress_s", "VDI_RECONCILE_STUCK_IN_PROGRESS_S", "14400",
            "Seconds a request may stay in progress unchanged, its run no longer running, before the reconcile "
            "fails it", float),
    Setting("reconcile_stuck_removing_s", "VDI_RECONCILE_STUCK_REMOVING_S", "7200",
            "Seconds a request may stay removing unchanged before the reconcile reports it", float),
    Setting("reconcile_jql_page", "VDI_RECONCILE_JQL_PAGE", "100",
            "Issues per page of the reconcile's Jira searches", int),
    Setting("delivery_redispatch_after_s", "VDI_DELIVERY_REDISPATCH_AFTER_S", "600",
            "Deliveries: seconds a delivery may stay pending before the reconcile dispatches it again", float),
    Setting("delivery_requeue_max", "VDI_DELIVERY_REQUEUE_MAX", "3",
            "Deliveries: how many times the reconcile requeues a delivery Airflow refused before it dead-letters it",
            int),
    Setting("delivery_retention_days", "VDI_DELIVERY_RETENTION_DAYS", "30",
            "Deliveries: days a dispatched or dead-lettered delivery is kept before the reconcile prunes it", float),
    Setting("delivery_ignored_retention_days", "VDI_DELIVERY_IGNORED_RETENTION_DAYS", "3",
            "Deliveries: days an ignored delivery is kept before the reconcile prunes it", float),
    Setting("delivery_prune_limit", "VDI_DELIVERY_PRUNE_LIMIT", "10000",
            "Deliveries: most deliveries one reconcile run prunes; the rest wait for the next run", int),
)


@dataclass(frozen=True)
class VdiSettings:
    """One attribute per row of ``SETTINGS``, parsed."""

    database_url: str | None
    catalog_path: str | None
    playbook_bucket: str | None
    jira_bundle_field: str
    jira_user_field: str
    jira_os_field: str
    jira_trigger_status: str
    jira_removal_status: str
    jira_request_type: str
    task_retries: int
    retry_delay_s: float
    poke_interval_s: float
    wait_timeout_s: float
    bootstrap_timeout_s: float
    task_timeout_s: float
    retry_after_max_s: float
    failure_report_wait_s: float
    lock_timeout_s: float
    login_source: str
    jira_login_field: str
    jira_login_property: str
    login_map_path: str | None
    reconcile_schedule: str
    reconcile_lookback_s: float
    reconcile_lost_after_s: float
    reconcile_max_fixes: int
    reconcile_terminate_orphans: bool
    reconcile_reprovision: bool
    reconcile_stuck_in_progress_s: float
    reconcile_stuck_removing_s: float
    reconcile_jql_page: int
    delivery_redispatch_after_s: float
    delivery_requeue_max: int
    delivery_retention_days: float
    delivery_ignored_retention_days: float
    delivery_prune_limit: int


def load(environ: Mapping[str, str] | None = None) -> VdiSettings:
    """The settings from the environment (or ``environ``); a bad number names its variable."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = env.get(setting.variable) or setting.default
        try:
            values[setting.name] = None if raw is None else setting.parse(raw)
        except ValueError:
            raise ValueError(f"{setting.variable}={raw!r} is not a valid {setting.parse.__name__}") from None
    return VdiSettings(**values)


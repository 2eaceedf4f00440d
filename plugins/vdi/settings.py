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
    task_retries: int
    retry_delay_s: float
    poke_interval_s: float
    wait_timeout_s: float
    bootstrap_timeout_s: float
    task_timeout_s: float
    retry_after_max_s: float
    lock_timeout_s: float
    login_source: str
    jira_login_field: str
    jira_login_property: str
    login_map_path: str | None


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


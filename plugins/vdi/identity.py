"""Who gets which desktop: a Jira user's Leostream login, and the broker names made from it.

The login is the user's email when Jira shows it (on Jira Data Center, else their username). Jira Cloud hides
most users' email; then ``VDI_LOGIN_SOURCE`` says where the login comes from: ``field``, the ticket's
``VDI_JIRA_LOGIN_FIELD`` (read by ``vdi.request.parse_issue``); ``property``, the Jira user property
``VDI_JIRA_LOGIN_PROPERTY``; ``file``, the accountId → login map at ``VDI_LOGIN_MAP_PATH``; ``none``, nowhere
(the request is refused). An Atlassian accountId is never a login.

Logins are one user whatever their case: ``Jane@X`` and ``jane@x`` share a policy. A policy's name keeps the
login readable and ends in a hash of its case-folded form, so two logins that read alike after the unsafe
characters are replaced (``jane+vdi@x``, ``jane-vdi@x``) still get two policies.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from vdi.settings import VdiSettings, load

if TYPE_CHECKING:
    from vdi.jira import JiraTicket

LOGIN_SOURCES = ("field", "property", "file", "none")
POLICY_PREFIX = "vdi-user-"
POLICY_NAME_MAX = 100  # Leostream's PolicyFull.name
_HASH_CHARS = 12  # 48 bits: a collision among a studio's logins is not a practical worry


def login_key(login: str) -> str:
    """The form two logins are compared in: one user whatever the case."""
    return login.strip().casefold()


def policy_name_for(login: str) -> str:
    """The user's own Leostream policy: ``vdi-user-<readable login>-<hash of the case-folded login>``."""
    key = login_key(login)
    digest = hashlib.sha256(key.encode()).hexdigest()[:_HASH_CHARS]
    readable = re.sub(r"[^a-z0-9@._-]", "-", key)[:POLICY_NAME_MAX - len(POLICY_PREFIX) - 1 - _HASH_CHARS]
    return f"{POLICY_PREFIX}{readable}-{digest}"


def login_source(settings: VdiSettings) -> str:
    """``VDI_LOGIN_SOURCE``, checked."""
    source = settings.login_source.strip().lower()
    if source not in LOGIN_SOURCES:
        raise ValueError(f"VDI_LOGIN_SOURCE={settings.login_source!r} is not one of {', '.join(LOGIN_SOURCES)}")
    return source


@dataclass(frozen=True)
class LoginLookup:
    """accountId → Leostream login from outside the ticket (None when not known); ``hint`` tells the
    requester how it gets known."""

    find: Callable[[str], str | None]
    hint: str

    def __call__(self, account_id: str) -> str | None:
        return self.find(account_id)


def login_lookup(jira: JiraTicket, settings: VdiSettings | None = None) -> LoginLookup | None:
    """The configured lookup for users whose email Jira hides; None for the ``field`` and ``none`` sources
    (the first is read from the issue itself)."""
    settings = settings or load()
    source = login_source(settings)
    if source == "property":
        key = settings.jira_login_property
        return LoginLookup(lambda account_id: _property_login(jira.user_property(account_id, key)),
                           f"the platform team must set their Leostream login as their Jira user property {key}")
    if source == "file":
        mapping = read_login_map(settings.login_map_path)
        return LoginLookup(mapping.get, "the platform team must add their Jira account to VDI Studios' login map")
    return None


def _property_login(value: Any) -> str | None:
    """A user property's value as a login: a JSON string, or an object with a ``login`` string."""
    if isinstance(value, dict):
        value = value.get("login")
    return value if isinstance(value, str) else None


def read_login_map(path: str | None) -> dict[str, str]:
    """The YAML (or JSON) file ``{accountId: login}``."""
    if not path:
        raise ValueError("VDI_LOGIN_SOURCE=file needs VDI_LOGIN_MAP_PATH (the accountId → login map)")
    try:
        mapping = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"cannot read the login map {path}: {type(error).__name__}") from None
    if mapping is None:
        return {}
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in mapping.items()):
        raise ValueError(f"the login map {path} must map accountIds to logins (text to text)")
    return mapping

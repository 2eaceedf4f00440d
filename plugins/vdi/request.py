"""A desktop request parsed and validated from a Jira issue (REST ``GET issue`` or a webhook's ``issue``)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vdi.identity import login_source
from vdi.settings import load

# Namespace of request ids: uuid5(namespace, issue key) gives one stable id per ticket.
REQUEST_ID_NAMESPACE = uuid.UUID("8e0f6c52-5b7e-4f4e-9d43-6a1f0c3b7d21")
ISSUE_KEY_PATTERN = r"^[A-Z][A-Z0-9_]{0,29}-[1-9][0-9]{0,9}$"
BUNDLE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class RequestInvalid(ValueError):
    """The issue cannot become a desktop request; ``missing`` names the absent fields."""

    def __init__(self, issue_key: str, missing: list[str] | None = None, problems: list[str] | None = None):
        self.issue_key = issue_key
        self.missing = missing or []
        self.problems = problems or []
        parts = []
        if self.missing:
            parts.append("missing " + ", ".join(self.missing))
        parts += self.problems
        super().__init__(f"{issue_key}: " + "; ".join(parts))


@dataclass(frozen=True)
class JiraFieldConfig:
    """Which Jira fields carry the request (each a field id such as ``customfield_10050``, or its name) and the
    status in which a ticket is provisioned. ``login_field`` holds the Leostream login of a user whose email
    Jira hides (None unless ``VDI_LOGIN_SOURCE=field``)."""

    bundle_field: str
    user_field: str
    os_field: str
    trigger_status: str
    login_field: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "JiraFieldConfig":
        """From the ``VDI_JIRA_*`` and ``VDI_LOGIN_SOURCE`` settings (``vdi.settings``, which holds their
        defaults)."""
        settings = load(environ)
        return cls(bundle_field=settings.jira_bundle_field, user_field=settings.jira_user_field,
                   os_field=settings.jira_os_field, trigger_status=settings.jira_trigger_status,
                   login_field=settings.jira_login_field if login_source(settings) == "field" else None)


class DesktopUser(BaseModel):
    """The person the desktop is for. ``login`` is their Leostream user login, in lower case: logins are one
    user whatever their case (see ``vdi.identity``)."""

    model_config = ConfigDict(frozen=True)

    login: str = Field(min_length=1, max_length=64)
    display_name: str = Field(min_length=1)
    account_id: str | None = None

    @field_validator("login", mode="before")
    @classmethod
    def _one_case(cls, login: Any) -> Any:
        return login.strip().lower() if isinstance(login, str) else login


class DesktopRequest(BaseModel):
    """One desktop for one Jira issue."""

    model_config = ConfigDict(frozen=True)

    issue_key: str = Field(pattern=ISSUE_KEY_PATTERN)
    project_key: str
    issue_type: str
    status: str
    summary: str = ""
    bundle: str = Field(pattern=BUNDLE_PATTERN)
    os: str | None = None
    user: DesktopUser

    @property
    def request_id(self) -> uuid.UUID:
        return request_id_for(self.issue_key)


def request_id_for(issue_key: str) -> uuid.UUID:
    return uuid.uuid5(REQUEST_ID_NAMESPACE, issue_key)


def status_name(fields: dict[str, Any]) -> str | None:
    """``fields.status`` as a name: Jira sends an object; some payloads carry a plain string."""
    status = fields.get("status")
    if isinstance(status, dict):
        return status.get("name")
    return status if isinstance(status, str) else None


def field_id_for(configured: str, field_names: dict[str, str]) -> str:
    """A configured field: an id as is, else looked up by name (case-insensitive)."""
    if re.fullmatch(r"customfield_\d+|[a-z]+", configured):
        return configured
    by_lower = {name.lower(): field_id for name, field_id in field_names.items()}
    return by_lower.get(configured.lower(), configured)


def _text(value: Any) -> str | None:
    """A scalar out of a Jira field value: string, option ``{"value"}``, named object, or the first of a list."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("value") or value.get("name") or value.get("displayName")
    if isinstance(value, str):
        return value.strip() or None
    return None


def person_in(value: Any) -> dict | None:
    """A Jira user object (the first of a list)."""
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, dict) and (value.get("accountId") or value.get("emailAddress")
                                                 or value.get("name")) else None


def login_of(key: str, person: dict, fields: dict[str, Any], config: JiraFieldConfig, field_names: dict[str, str],
             login_lookup: Callable[[str], str | None] | None) -> str:
    """The person's Leostream login: their email when Jira shows it (Data Center: else their username); else
    the ticket's login field or the lookup. Never their accountId."""
    if shown := _text(person.get("emailAddress")) or _text(person.get("name")):
        return shown
    account_id = person.get("accountId")
    found = None
    if config.login_field:
        found = _text(fields.get(field_id_for(config.login_field, field_names)))
    if not found and login_lookup and account_id:
        found = _text(login_lookup(account_id))
    name = _text(person.get("displayName")) or "the desktop's user"
    if found and found.casefold() == str(account_id).casefold():
        raise RequestInvalid(key, problems=[f"the Leostream login found for {name} is their Atlassian account id, "
                                            "which nobody signs in with"])
    if found:
        return found
    hints = []
    if config.login_field:
        hints.append(f"set their {config.login_field} on the ticket")
    if login_lookup:
        hints.append(getattr(login_lookup, "hint", "the platform team must map their Jira account to a login"))
    if not hints:
        hints.append("the platform team must tell VDI Studios where to find Leostream logins (VDI_LOGIN_SOURCE)")
    raise RequestInvalid(key, problems=[f"Jira hides the email of {name}; " + ", or ".join(hints)])


def parse_issue(issue: dict[str, Any], config: JiraFieldConfig, field_names: dict[str, str] | None = None,
                login_lookup: Callable[[str], str | None] | None = None) -> DesktopRequest:
    """Validate a Jira issue into a ``DesktopRequest``; ``RequestInvalid`` names every missing field, or the
    login that cannot be found. ``login_lookup`` (``vdi.identity.login_lookup``) maps the accountId of a user
    whose email Jira hides to their login."""
    field_names = field_names or {}
    key = issue.get("key") if isinstance(issue, dict) else None
    if not isinstance(key, str) or not re.match(ISSUE_KEY_PATTERN, key):
        raise RequestInvalid(str(key), problems=[f"not a Jira issue key: {key!r}"])
    fields = issue.get("fields")
    if not isinstance(fields, dict):
        raise RequestInvalid(key, missing=["fields"])

    bundle = _text(fields.get(field_id_for(config.bundle_field, field_names)))
    person = person_in(fields.get(field_id_for(config.user_field, field_names))) or person_in(fields.get("reporter"))
    status = status_name(fields)
    project = fields.get("project") if isinstance(fields.get("project"), dict) else {}
    issue_type = fields.get("issuetype") if isinstance(fields.get("issuetype"), dict) else {}
    missing = [name for name, value in (
        (config.bundle_field, bundle),
        (f"{config.user_field} (or reporter)", person),
        ("status", status),
    ) if value is None]
    if missing:
        raise RequestInvalid(key, missing=missing)
    login = login_of(key, person, fields, config, field_names, login_lookup)
    try:
        return DesktopRequest(
            issue_key=key,
            project_key=project.get("key") or key.rsplit("-", 1)[0],
            issue_type=issue_type.get("name", ""),
            status=status,
            summary=fields.get("summary") or "",
            bundle=bundle,
            os=_text(fields.get(field_id_for(config.os_field, field_names))),
            user=DesktopUser(login=login, display_name=_text(person.get("displayName")) or login,
                             account_id=person.get("accountId")),
        )
    except ValueError as error:
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in getattr(error, "errors", lambda: [])()]
        raise RequestInvalid(key, problems=problems or [str(error)]) from None

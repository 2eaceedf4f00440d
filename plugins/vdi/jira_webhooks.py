"""The bridge's Jira admin webhook (``/rest/webhooks/1.0/webhook``): what an admin does once in Jira, idempotent.

The webhook is found again by its name or its URL and updated (URL, events, JQL filter, secret) rather than
added a second time; the bridge itself need not be running. Jira never shows a webhook's secret back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import requests

WEBHOOK_NAME = "VDI Studios bridge"
WEBHOOK_PATH = "/webhooks/jira"
WEBHOOK_EVENTS = ["jira:issue_created", "jira:issue_updated"]
WEBHOOK_JQL = "project = VDI"
_ENDPOINT = "/rest/webhooks/1.0/webhook"


class RegistrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Registration:
    """Jira's view of the webhook (never the secret) and whether it was ``created`` or ``updated``."""

    action: str
    webhook: dict


def webhook_url(bridge_url: str) -> str:
    return bridge_url.rstrip("/") + WEBHOOK_PATH


def project_jql(project_keys: Iterable[str]) -> str:
    """The webhook's JQL filter: issues of the projects that may request desktops."""
    keys = sorted(set(project_keys))
    if not keys:
        raise RegistrationError("no project may request desktops (the catalog's projects are empty)")
    if len(keys) == 1:
        return f"project = {keys[0]}"
    return f"project in ({', '.join(keys)})"


def route_events(routes: Sequence) -> list[str]:
    """The Jira events the bridge's routes (``webhook_bridge.events.Route``) start runs for, in a stable order."""
    return sorted({event for route in routes for event in route.events})


def bridge_scope(env: Mapping[str, str]) -> tuple[list[str], str]:
    """What the webhook must deliver for the bridge as ``env`` configures it: the events its routes start runs on
    (``BRIDGE_ROUTES``), and a JQL filter on the projects it handles (``BRIDGE_PROJECTS``, else the catalog's);
    ``RegistrationError`` naming a bad setting."""
    from vdi import settings
    from vdi.catalog import load_catalog
    from webhook_bridge.events import Router
    from webhook_bridge.settings import from_environment

    try:
        config = from_environment(env)
        router = Router.from_config(config["ROUTES"], config["PROJECTS"], config["ISSUE_TYPES"])
        projects = router.projects or load_catalog(settings.load(env).catalog_path).projects
    except (OSError, ValueError) as error:
        raise RegistrationError(str(error).splitlines()[0]) from None
    return route_events(router.routes), project_jql(projects)


def register_bridge_webhook(jira_url: str, user: str, token: str, bridge_url: str, secret: str,
                            timeout_s: float = 10, *, events: Sequence[str] = tuple(WEBHOOK_EVENTS),
                            jql: str = WEBHOOK_JQL) -> dict:
    """Create or update the bridge's webhook; returns Jira's view of it (which never shows the secret)."""
    return save_bridge_webhook(jira_url, user, token, bridge_url, secret, timeout_s, events=events, jql=jql).webhook


def save_bridge_webhook(jira_url: str, user: str, token: str, bridge_url: str, secret: str,
                        timeout_s: float = 10, *, events: Sequence[str] = tuple(WEBHOOK_EVENTS),
                        jql: str = WEBHOOK_JQL) -> Registration:
    """Create the bridge's webhook, or update the one already there (same name, or pointing at the bridge)."""
    if not secret:
        raise RegistrationError("the webhook secret is empty: refusing to register an unsigned webhook")
    if not events:
        raise RegistrationError("no event to subscribe to: the bridge's routes name none")
    endpoint = jira_url.rstrip("/") + _ENDPOINT
    url = webhook_url(bridge_url)
    body = {"name": WEBHOOK_NAME, "url": url, "events": list(events),
            "filters": {"issue-related-events-section": jql}, "excludeBody": False, "secret": secret}
    with requests.Session() as session:
        session.auth = (user, token)
        try:
            listed = session.get(endpoint, timeout=timeout_s)
            _check(listed, "list webhooks")
            existing = find_own(listed.json(), url)
            if existing is None:
                response, action = session.post(endpoint, json=body, timeout=timeout_s), "created"
            else:
                webhook_id = existing["self"].rstrip("/").rsplit("/", 1)[1]
                response, action = session.put(f"{endpoint}/{webhook_id}", json=body, timeout=timeout_s), "updated"
            _check(response, "save the webhook")
        except requests.RequestException as error:
            raise RegistrationError(f"Jira at {jira_url} did not answer ({type(error).__name__})") from None
        return Registration(action, response.json())


def find_own(webhooks: list[dict], url: str) -> dict | None:
    """The product's webhook among Jira's: by name first, else by the bridge's URL."""
    by_name = [w for w in webhooks if w.get("name") == WEBHOOK_NAME]
    by_url = [w for w in webhooks if str(w.get("url", "")).rstrip("/") == url.rstrip("/")]
    found = by_name or by_url
    return found[0] if found else None


def _check(response: requests.Response, what: str) -> None:
    if response.ok:
        return
    try:
        body = response.json()
        detail = "; ".join(body.get("errorMessages", []) + [f"{k}: {v}" for k, v in body.get("errors", {}).items()])
    except (ValueError, AttributeError):
        detail = ""
    raise RegistrationError(f"Jira refused to {what}: HTTP {response.status_code} {detail}".strip())

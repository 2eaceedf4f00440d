"""Register the bridge as the Jira sandbox's admin webhook: what an admin does once in Jira (idempotent).

Looks the webhook up by name first and updates it (URL, events, JQL filter, secret) rather than adding a second one;
the bridge itself need not be running.
"""

from __future__ import annotations

import requests

WEBHOOK_NAME = "VDI Studios bridge"
WEBHOOK_EVENTS = ["jira:issue_created", "jira:issue_updated"]
WEBHOOK_JQL = "project = VDI"


class RegistrationError(RuntimeError):
    pass


def register_bridge_webhook(jira_url: str, user: str, token: str, bridge_url: str, secret: str,
                            timeout_s: float = 10) -> dict:
    """Create or update the bridge's webhook; returns Jira's view of it (which never shows the secret)."""
    if not secret:
        raise RegistrationError("JIRA_WEBHOOK_SECRET is empty: refusing to register an unsigned webhook")
    endpoint = jira_url.rstrip("/") + "/rest/webhooks/1.0/webhook"
    body = {"name": WEBHOOK_NAME, "url": bridge_url.rstrip("/") + "/webhooks/jira", "events": WEBHOOK_EVENTS,
            "filters": {"issue-related-events-section": WEBHOOK_JQL}, "excludeBody": False, "secret": secret}
    with requests.Session() as session:
        session.auth = (user, token)
        try:
            listed = session.get(endpoint, timeout=timeout_s)
            _check(listed, "list webhooks")
            existing = next((w for w in listed.json() if w.get("name") == WEBHOOK_NAME), None)
            if existing is None:
                response = session.post(endpoint, json=body, timeout=timeout_s)
            else:
                response = session.put(f"{endpoint}/{existing['self'].rsplit('/', 1)[1]}", json=body,
                                       timeout=timeout_s)
            _check(response, "save the webhook")
        except requests.RequestException as error:
            raise RegistrationError(f"Jira at {jira_url} did not answer ({type(error).__name__})") from None
        return response.json()


def _check(response: requests.Response, what: str) -> None:
    if response.ok:
        return
    try:
        body = response.json()
        detail = "; ".join(body.get("errorMessages", []) + [f"{k}: {v}" for k, v in body.get("errors", {}).items()])
    except (ValueError, AttributeError):
        detail = ""
    raise RegistrationError(f"Jira refused to {what}: HTTP {response.status_code} {detail}".strip())

"""Admin webhooks (``/rest/webhooks/1.0/webhook``): register, list, read, change and remove; admins only."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, g, jsonify

from sandbox.jira import jql
from sandbox.jira.routes.common import json_object, site
from sandbox.jira.site import WEBHOOK_EVENTS, JiraError, now

bp = Blueprint("webhook_admin", __name__)


def _require_admin() -> None:
    if not g.user.is_admin:
        raise JiraError(403, ["You do not have permission to manage webhooks."])


def _webhook_spec(body: dict, partial: dict | None = None) -> dict:
    spec = dict(partial or {})
    errors = {}
    if "name" in body or partial is None:
        if not isinstance(body.get("name"), str) or not body["name"].strip():
            errors["name"] = "Name is required."
        else:
            spec["name"] = body["name"].strip()
    if "url" in body or partial is None:
        url = body.get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if not parts or parts.scheme not in ("http", "https") or not parts.netloc:
            errors["url"] = "URL must be a valid http or https URL."
        else:
            spec["url"] = url
    if "events" in body or partial is None:
        events = body.get("events")
        if not isinstance(events, list) or not events or not all(e in WEBHOOK_EVENTS for e in events):
            errors["events"] = "Events must be a non-empty list of: " + ", ".join(WEBHOOK_EVENTS)
        else:
            spec["events"] = list(events)
    filters = body.get("filters")
    if isinstance(filters, dict) and "issue-related-events-section" in filters:
        spec["jql"] = filters["issue-related-events-section"] or ""
    elif "jqlFilter" in body:
        spec["jql"] = body["jqlFilter"] or ""
    spec.setdefault("jql", "")
    if spec["jql"]:
        try:
            jql.compile_jql(spec["jql"], site(), strict=True)
        except jql.JqlError as error:
            errors["filters"] = str(error)
    for flag in ("excludeBody", "enabled"):
        if flag in body:
            if not isinstance(body[flag], bool):
                errors[flag] = f"'{flag}' must be true or false."
            else:
                spec[flag] = body[flag]
    spec.setdefault("excludeBody", False)
    spec.setdefault("enabled", True)
    if "secret" in body:
        if body["secret"] is not None and not isinstance(body["secret"], str):
            errors["secret"] = "Secret must be a string."
        else:
            spec["secret"] = body["secret"] or None
    spec.setdefault("secret", None)
    if errors:
        raise JiraError(400, errors=errors)
    return spec


def _webhook(webhook_id: int) -> dict:
    found = site().webhooks.get(webhook_id)
    if found is None:
        raise JiraError(404, [f"Webhook with id '{webhook_id}' does not exist."])
    return found


@bp.get("/rest/webhooks/1.0/webhook")
def list_webhooks():
    _require_admin()
    s = site()
    with s.lock:
        return jsonify([s.webhook_json(w) for w in s.webhooks.values()])


@bp.post("/rest/webhooks/1.0/webhook")
def create_webhook():
    _require_admin()
    body = json_object()
    s = site()
    with s.lock:
        webhook = s.add_webhook(_webhook_spec(body), g.user)
        return jsonify(s.webhook_json(webhook)), 201


@bp.get("/rest/webhooks/1.0/webhook/<int:webhook_id>")
def get_webhook(webhook_id: int):
    _require_admin()
    s = site()
    with s.lock:
        return jsonify(s.webhook_json(_webhook(webhook_id)))


@bp.put("/rest/webhooks/1.0/webhook/<int:webhook_id>")
def update_webhook(webhook_id: int):
    _require_admin()
    body = json_object()
    s = site()
    with s.lock:
        webhook = _webhook(webhook_id)
        webhook.update(_webhook_spec(body, webhook), lastUpdatedUser=g.user.account_id,
                       lastUpdated=int(now().timestamp() * 1000))
        return jsonify(s.webhook_json(webhook))


@bp.delete("/rest/webhooks/1.0/webhook/<int:webhook_id>")
def delete_webhook(webhook_id: int):
    _require_admin()
    s = site()
    with s.lock:
        _webhook(webhook_id)
        del s.webhooks[webhook_id]
        return "", 204

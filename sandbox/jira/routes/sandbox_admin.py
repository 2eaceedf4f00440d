"""The Jira sandbox's own test-only API under ``/_sandbox`` (beside the fault and call-log API): the webhook
deliveries it made."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from sandbox.jira.routes.common import dispatcher

bp = Blueprint("jira_sandbox_admin", __name__)


@bp.get("/webhook-deliveries")
def webhook_deliveries():
    try:
        since = int(request.args.get("since", "0"))
    except ValueError:
        return jsonify({"error": "'since' must be an integer"}), 400
    return jsonify(dispatcher().deliveries(since))


@bp.delete("/webhook-deliveries")
def clear_webhook_deliveries():
    dispatcher().clear()
    return "", 204

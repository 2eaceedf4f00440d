"""The bridge's Jira webhook registration lives in ``vdi.jira_webhooks`` (the ``vdi webhook register`` command);
this module keeps the names the local stack and its tests import."""

from vdi.jira_webhooks import WEBHOOK_EVENTS, WEBHOOK_JQL, WEBHOOK_NAME, RegistrationError, register_bridge_webhook

__all__ = ["WEBHOOK_EVENTS", "WEBHOOK_JQL", "WEBHOOK_NAME", "RegistrationError", "register_bridge_webhook"]

"""The webhook events of a change: which registered webhooks it matches and the payload each one is sent."""

from __future__ import annotations

from typing import Any

from sandbox.jira.routes.common import dispatcher, site
from sandbox.jira.site import History, Issue, User, now


def fire(issue: Issue, event: str, event_type: str, user: User, changelog: dict | None = None,
         comment: dict | None = None) -> None:
    """Queue the deliveries for this change to every matching webhook (call with the site lock held)."""
    s = site()
    issue_body = s.issue_json(issue, 2)
    issue_body.pop("expand", None)
    targets = []
    for webhook in s.webhooks.values():
        wanted = {e.lower() for e in webhook["events"]}
        if not webhook["enabled"]:
            continue
        for name in ([event] + (["comment_created"] if comment is not None and event_type == "issue_commented"
                                else [])):
            if name in wanted and s.matches(issue, webhook["jql"]):
                targets.append((webhook, name))
    for webhook, name in targets:
        payload: dict[str, Any] = {"timestamp": int(now().timestamp() * 1000), "webhookEvent": name}
        if name.startswith("jira:"):
            payload["issue_event_type_name"] = event_type
            payload["user"] = s.user_json(user.account_id, for_webhook=True)
            payload["issue"] = issue_body
            if changelog is not None:
                payload["changelog"] = changelog
            if comment is not None:
                payload["comment"] = comment
        else:
            payload["comment"] = comment
            payload["issue"] = {"id": issue.id, "self": issue_body["self"], "key": issue.key,
                                "fields": {k: issue_body["fields"][k] for k in
                                           ("summary", "issuetype", "project", "status", "reporter")}}
        dispatcher().deliver(dict(webhook), name, payload, issue.key)


def changelog(history: History) -> dict:
    return {"id": history.id, "items": [item.render() for item in history.items]}

"""What the Jira sandbox's routes share: the site, request bodies, paging and Jira's wording of errors."""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any

from flask import current_app, request

from sandbox.jira.site import JiraError, Site
from sandbox.jira.webhooks import Dispatcher

INVALID_PAYLOAD = "Invalid request payload. Refer to the REST API documentation and try again."
NOT_ON_SCREEN = "Field '{}' cannot be set. It is not on the appropriate screen, or unknown."


def site() -> Site:
    return current_app.extensions["jira_site"]


def dispatcher() -> Dispatcher:
    return current_app.extensions["jira_dispatcher"]


def error_body(status: int, message: str) -> dict:
    return {"errorMessages": [message], "errors": {}}


def json_body(required: bool = True) -> Any:
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise JiraError(400, ["No content to map due to end-of-input"])
        return None
    if request.mimetype != "application/json":
        raise JiraError(415, ["Unsupported Media Type: use Content-Type: application/json"])
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise JiraError(400, [INVALID_PAYLOAD]) from None


def json_object() -> dict:
    body = json_body()
    if not isinstance(body, dict):
        raise JiraError(400, [INVALID_PAYLOAD])
    return body


@contextmanager
def locked_issue(key: str):
    """The site and its issue ``key`` (Jira's 404 when there is none), with the site's lock held."""
    s = site()
    with s.lock:
        yield s, s.issue(key)


def paging(args: dict, default_limit: int = 50, cap: int = 100) -> tuple[int, int]:
    try:
        start = int(args.get("startAt", 0))
        limit = int(args.get("maxResults", default_limit))
    except (TypeError, ValueError):
        raise JiraError(400, ["The value of 'startAt' and 'maxResults' must be integers."]) from None
    if start < 0 or limit < 0:
        raise JiraError(400, ["The value of 'startAt' and 'maxResults' must not be negative."])
    return start, min(limit, cap)

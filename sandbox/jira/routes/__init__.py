"""The Jira REST API the sandbox answers: one blueprint per resource, nested in one that authenticates."""

from __future__ import annotations

import base64
import binascii
import hmac

from flask import Blueprint, current_app, g, jsonify, request

from sandbox.jira.routes import (comments, issues, links, meta, properties, search, transitions, users, webhook_admin,
                                 workflows)
from sandbox.jira.routes.common import error_body, site
from sandbox.jira.site import JiraError, User

rest = Blueprint("jira_api", __name__)
for _resource in (meta, issues, comments, links, transitions, properties, search, users, webhook_admin, workflows):
    rest.register_blueprint(_resource.bp)


def _authenticate() -> User | None:
    header = request.headers.get("Authorization", "")
    config = current_app.config
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            email, _, token = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if email.lower() == config["JIRA_USER"].lower() and hmac.compare_digest(token, config["JIRA_TOKEN"]):
            return site().api_user
    elif scheme.lower() == "bearer":
        if hmac.compare_digest(credentials.strip(), config["JIRA_PAT"]):
            return site().api_user
    return None


@rest.before_request
def _require_auth():
    g.user = _authenticate()
    if g.user is None and not request.path.endswith("/serverInfo"):
        response = jsonify(error_body(401, "You are not authenticated. Authentication required to perform this "
                                           "operation."))
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Basic realm="protected-area"'
        return response
    # After authentication: an anonymous call is a 401 whatever the API version it names.
    version = (request.view_args or {}).get("version")
    if version is not None and version not in (2, 3):
        raise JiraError(404, ["The requested API version is not available."])
    return None

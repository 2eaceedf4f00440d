"""The Jira sandbox's Flask app: the REST subset real clients call, answered the way Jira Cloud answers.

``create_app(config)`` reads ``JIRA_URL``, ``JIRA_USER``, ``JIRA_TOKEN`` (and optionally ``JIRA_PAT``, a Bearer
personal access token, by default the same value as ``JIRA_TOKEN``), ``SEED_PATH``, ``WEBHOOK_DELAY_SCALE`` and
``WEBHOOK_TIMEOUT_S``. The routes live in ``sandbox.jira.routes``, one module per resource.
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from sandbox import faults
from sandbox.jira.routes import rest, sandbox_admin
from sandbox.jira.routes.common import error_body
from sandbox.jira.site import JiraError, Site
from sandbox.jira.webhooks import Dispatcher

log = logging.getLogger(__name__)


def create_app(config: dict | None = None) -> Flask:
    app = Flask("sandbox.jira")
    app.config.update({
        "JIRA_URL": "http://127.0.0.1:8081", "JIRA_USER": "vdi-bot@studio.example", "JIRA_TOKEN": "",
        "JIRA_PAT": None, "SEED_PATH": None, "WEBHOOK_DELAY_SCALE": 1.0, "WEBHOOK_TIMEOUT_S": 20.0,
        "FIRST_ISSUE_NUMBER": 1,
    })
    app.config.update(config or {})
    if not app.config["JIRA_TOKEN"]:
        raise ValueError("the Jira sandbox needs JIRA_TOKEN (the API token it accepts)")
    app.config["JIRA_PAT"] = app.config["JIRA_PAT"] or app.config["JIRA_TOKEN"]
    app.json.sort_keys = False
    seed = {"seed_path": app.config["SEED_PATH"]} if app.config["SEED_PATH"] else {}
    app.extensions["jira_site"] = Site(app.config["JIRA_URL"], app.config["JIRA_USER"],
                                       first_issue_number=int(app.config["FIRST_ISSUE_NUMBER"]), **seed)
    app.extensions["jira_dispatcher"] = Dispatcher(float(app.config["WEBHOOK_DELAY_SCALE"]),
                                                   float(app.config["WEBHOOK_TIMEOUT_S"]))
    faults.install(app, error_body, extra_admin=sandbox_admin.bp)
    app.register_blueprint(rest)

    @app.errorhandler(JiraError)
    def _jira_error(error: JiraError):
        response = jsonify(error.body())
        response.status_code = error.status
        response.headers.update(error.headers)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        messages = {404: "The requested resource could not be found.",
                    405: f"Method {request.method} is not allowed for this resource."}
        response = jsonify(error_body(error.code or 500, messages.get(error.code, error.name)))
        response.status_code = error.code or 500
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("unhandled error in the Jira sandbox on %s %s", request.method, request.path)
        response = jsonify(error_body(500, "Internal server error"))
        response.status_code = 500
        return response

    return app

"""API sessions: log in for a ``sid`` (the Bearer token of every other call) and log out."""

from __future__ import annotations

from flask import Blueprint, g, jsonify

from sandbox.leostream.broker import bad_data, missing
from sandbox.leostream.routes.common import broker, json_object

bp = Blueprint("session", __name__)


@bp.post("/session/login")
def login():
    body = json_object(allow_form=True)
    absent = missing(body, ["user_login", "password"])
    if absent:
        raise bad_data("Missing required fields", missing_fields=absent)
    errors = [{"message": "Expected string", "path": f"/body/{name}"} for name in ("user_login", "password")
              if not isinstance(body[name], str)]
    if not errors and not 3 <= len(body["password"]) <= 100:
        errors.append({"message": "String is too short: 3/100.", "path": "/body/password"})
    if not errors and len(body["user_login"]) > 64:
        errors.append({"message": "String is too long: 64.", "path": "/body/user_login"})
    if errors:
        raise bad_data("Invalid login data", errors=errors)
    return jsonify({"sid": broker().login(body["user_login"], body["password"])})


@bp.post("/session/logout")
def logout():
    broker().logout(g.session.sid)
    return jsonify({"message": "Signed out user"})

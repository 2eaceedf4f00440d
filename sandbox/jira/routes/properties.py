"""Issue entity properties: list the keys, read, write and delete one; and the checks every property write
shares (user properties too)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from sandbox.jira.routes.common import json_body, locked_issue
from sandbox.jira.site import MAX_PROPERTY_CHARS, MAX_PROPERTY_KEY, JiraError

bp = Blueprint("properties", __name__)


def property_value(prop: str) -> Any:
    """A property write's JSON value, within Jira's bounds on the key and the value."""
    if len(prop) > MAX_PROPERTY_KEY:
        raise JiraError(400, [f"The property key can not be longer than {MAX_PROPERTY_KEY} characters."])
    raw = request.get_data(cache=True)
    if len(raw.decode("utf-8", "replace")) > MAX_PROPERTY_CHARS:
        raise JiraError(400, [f"The property value can not be longer than {MAX_PROPERTY_CHARS} characters."])
    return json_body()


def property_missing(prop: str) -> JiraError:
    return JiraError(404, [f"The property with key '{prop}' does not exist."])


@bp.get("/rest/api/<int:version>/issue/<key>/properties")
def property_keys(version: int, key: str):
    with locked_issue(key) as (s, issue):
        return jsonify({"keys": [{"self": f"{s.base_url}/rest/api/{version}/issue/{issue.id}/properties/{k}",
                                  "key": k} for k in issue.properties]})


@bp.get("/rest/api/<int:version>/issue/<key>/properties/<path:prop>")
def get_property(version: int, key: str, prop: str):
    with locked_issue(key) as (s, issue):
        if prop not in issue.properties:
            raise property_missing(prop)
        return jsonify({"key": prop, "value": issue.properties[prop]})


@bp.put("/rest/api/<int:version>/issue/<key>/properties/<path:prop>")
def set_property(version: int, key: str, prop: str):
    value = property_value(prop)
    with locked_issue(key) as (s, issue):
        created = prop not in issue.properties
        issue.properties[prop] = value
        return "", 201 if created else 200


@bp.delete("/rest/api/<int:version>/issue/<key>/properties/<path:prop>")
def delete_property(version: int, key: str, prop: str):
    with locked_issue(key) as (s, issue):
        if prop not in issue.properties:
            raise property_missing(prop)
        del issue.properties[prop]
        return "", 204

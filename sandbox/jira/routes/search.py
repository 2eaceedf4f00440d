"""JQL search: the classic paged ``/search`` and the token-paged ``/search/jql``."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from flask import Blueprint, jsonify, request

from sandbox.jira import jql
from sandbox.jira.routes.common import INVALID_PAYLOAD, json_object, paging, site
from sandbox.jira.site import JiraError

bp = Blueprint("search", __name__)


def _search_params() -> dict:
    if request.method == "POST":
        params = dict(json_object())
        for name in ("fields", "expand", "properties"):
            value = params.get(name)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                params[name] = ",".join(value)
            elif value is not None and not isinstance(value, str):
                raise JiraError(400, [INVALID_PAYLOAD])
        for name in ("jql", "nextPageToken"):
            if params.get(name) is not None and not isinstance(params[name], str):
                raise JiraError(400, [INVALID_PAYLOAD])
        for name in ("startAt", "maxResults"):
            if name in params and (isinstance(params[name], bool) or not isinstance(params[name], int)):
                raise JiraError(400, [INVALID_PAYLOAD])
        return params
    return request.args.to_dict()


def _run_jql(params: dict):
    strict = str(params.get("validateQuery", "strict")).lower() not in ("warn", "none", "false")
    try:
        return site().search(params.get("jql"), strict)
    except jql.JqlError as error:
        raise JiraError(400, [str(error)]) from None


@bp.route("/rest/api/<int:version>/search", methods=["GET", "POST"])
def search(version: int):
    params = _search_params()
    s = site()
    with s.lock:
        start, limit = paging(params)
        found, warnings = _run_jql(params)
        wanted = s.wanted_fields(params.get("fields"), "*navigable")
        properties = [p for p in str(params.get("properties") or "").split(",") if p]
        body = {"expand": "schema,names", "startAt": start, "maxResults": limit, "total": len(found),
                "issues": [s.issue_json(i, version, wanted, params.get("expand") or "", properties)
                           for i in found[start:start + limit]]}
        if warnings:
            body["warningMessages"] = warnings
        return jsonify(body)


@bp.route("/rest/api/<int:version>/search/jql", methods=["GET", "POST"])
def search_jql(version: int):
    params = _search_params()
    text = (params.get("jql") or "").strip()
    if not text or text.lower().startswith("order by"):
        raise JiraError(400, ["Unbounded JQL queries are not allowed here. Please add a search restriction to "
                              "your query."])
    s = site()
    with s.lock:
        token = params.get("nextPageToken")
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise JiraError(400, ["The provided next page token is invalid or expired."]) from None
        _, limit = paging({"maxResults": params.get("maxResults", 50)}, cap=5000)
        found, _ = _run_jql(dict(params, validateQuery="warn"))
        wanted = s.wanted_fields(params.get("fields"), "id")
        properties = [p for p in str(params.get("properties") or "").split(",") if p]
        page = found[start:start + limit]
        issues = []
        for issue in page:
            rendered = s.issue_json(issue, version, wanted - {"id"}, params.get("expand") or "", properties)
            if not rendered.get("fields"):
                rendered.pop("fields")
            issues.append(rendered)
        body: dict[str, Any] = {"issues": issues, "isLast": start + limit >= len(found)}
        if not body["isLast"]:
            body["nextPageToken"] = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
        return jsonify(body)

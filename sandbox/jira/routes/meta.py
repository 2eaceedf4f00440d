"""Jira's metadata: server info, the caller, fields, the project and the create screen (createmeta)."""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from sandbox.jira.routes.common import site
from sandbox.jira.site import JiraError, jira_time, now

bp = Blueprint("meta", __name__)


@bp.get("/rest/api/<int:version>/serverInfo")
def server_info(version: int):
    moment = now()
    return jsonify({"baseUrl": site().base_url, "version": "1001.0.0-SNAPSHOT", "versionNumbers": [1001, 0, 0],
                    "deploymentType": "Cloud", "buildNumber": 100289, "buildDate": "2026-11-20T00:00:00.000+0000",
                    "serverTime": jira_time(moment), "scmInfo": "sandbox", "serverTitle": site().server_title})


@bp.get("/rest/api/<int:version>/myself")
def myself(version: int):
    return jsonify(site().myself_json(g.user))


@bp.get("/rest/api/<int:version>/field")
def fields(version: int):
    return jsonify(site().field_list_json())


@bp.get("/rest/api/<int:version>/project")
def projects(version: int):
    return jsonify([site().project_json()])


@bp.get("/rest/api/<int:version>/project/<key>")
def project(version: int, key: str):
    s = site()
    if key.upper() != s.project["key"] and key != s.project["id"]:
        raise JiraError(404, [f"No project could be found with key '{key}'."])
    return jsonify(s.project_json())


@bp.get("/rest/api/<int:version>/issue/createmeta")
def createmeta(version: int):
    s = site()
    keys = {k.strip().upper() for k in request.args.get("projectKeys", "").split(",") if k.strip()}
    ids = {k.strip() for k in request.args.get("projectIds", "").split(",") if k.strip()}
    types = {t.strip().lower() for t in request.args.get("issuetypeNames", "").split(",") if t.strip()}
    types |= {t.strip() for t in request.args.get("issuetypeIds", "").split(",") if t.strip()}
    body = s.createmeta_json("projects.issuetypes.fields" in request.args.get("expand", ""), types or None)
    if (keys and s.project["key"] not in keys) or (ids and s.project["id"] not in ids):
        body["projects"] = []
    return jsonify(body)

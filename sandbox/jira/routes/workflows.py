"""Workflows as an admin reads them: the project's workflow scheme (``/workflowscheme/project``) and the classic
workflows with their statuses and transitions (``/workflow/search``). Each issue type of the seed has its own
workflow, named ``<project key>: <issue type>``; statuses and transitions are given by id, as Jira gives them."""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from sandbox.jira.routes.common import site
from sandbox.jira.site import JiraError

bp = Blueprint("workflows", __name__)
_SCHEME_ID = 10100


def _require_admin(what: str) -> None:
    if not g.user.is_admin:
        raise JiraError(403, [f"Only Jira administrators can access {what}."])


def _workflow_name(issue_type: dict) -> str:
    return f"{site().project['key']}: {issue_type['name']}"


def _workflow_json(issue_type: dict, expand: set[str]) -> dict:
    s = site()
    workflow = issue_type["workflow"]
    body: dict = {"id": {"name": _workflow_name(issue_type)},
                  "description": f"The workflow of {issue_type['name']} issues.", "isDefault": False}
    if expand & {"transitions", "transitions.rules", "transitions.properties"}:
        created = {"id": "1", "name": "Create", "description": "", "from": [],
                   "to": s.statuses[workflow["initial"]]["id"], "type": "initial"}
        body["transitions"] = [created] + [
            {"id": t["id"], "name": t["name"], "description": "",
             "from": [s.statuses[name]["id"] for name in t["from"]], "to": s.statuses[t["to"]]["id"],
             "type": "directed"} for t in workflow["transitions"]]
    if expand & {"statuses", "statuses.properties"}:
        names = [workflow["initial"]] + [name for t in workflow["transitions"] for name in (*t["from"], t["to"])]
        body["statuses"] = [{"id": s.statuses[name]["id"], "name": name} for name in dict.fromkeys(names)]
    return body


@bp.get("/rest/api/<int:version>/workflowscheme/project")
def workflow_scheme_projects(version: int):
    _require_admin("workflow scheme associations")
    s = site()
    asked = request.args.getlist("projectId")
    if not asked:
        raise JiraError(400, errors={"projectId": "The ID of a project has to be provided."})
    values = []
    if s.project["id"] in asked:
        values.append({"projectIds": [s.project["id"]], "workflowScheme": {
            "id": _SCHEME_ID, "name": f"{s.project['key']} workflow scheme", "description": "",
            "defaultWorkflow": "jira",
            "issueTypeMappings": {type_id: _workflow_name(t) for type_id, t in s.issue_types.items()},
            "self": f"{s.base_url}/rest/api/{version}/workflowscheme/{_SCHEME_ID}"}})
    return jsonify({"values": values})


@bp.get("/rest/api/<int:version>/workflow/search")
def search_workflows(version: int):
    _require_admin("workflows")
    s = site()
    names = set(request.args.getlist("workflowName"))
    expand = {part.strip() for part in request.args.get("expand", "").split(",") if part.strip()}
    start = int(request.args.get("startAt", 0))
    limit = int(request.args.get("maxResults", 50))
    with s.lock:
        found = [_workflow_json(t, expand) for t in s.issue_types.values()
                 if not names or _workflow_name(t) in names]
    page = found[start:start + limit]
    return jsonify({"maxResults": limit, "startAt": start, "total": len(found),
                    "isLast": start + len(page) >= len(found), "values": page})

"""Issue transitions: the ones open from the issue's status, and moving it along one."""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from sandbox.jira.routes.comments import new_comment
from sandbox.jira.routes.common import INVALID_PAYLOAD, NOT_ON_SCREEN, json_object, locked_issue
from sandbox.jira.routes.events import changelog, fire
from sandbox.jira.site import HistoryItem, JiraError

bp = Blueprint("transitions", __name__)


@bp.get("/rest/api/<int:version>/issue/<key>/transitions")
def list_transitions(version: int, key: str):
    with locked_issue(key) as (s, issue):
        with_fields = "transitions.fields" in request.args.get("expand", "")
        wanted_id = request.args.get("transitionId")
        transitions = [s.transition_json(t, with_fields) for t in s.transitions_from(issue)
                       if wanted_id is None or t["id"] == wanted_id]
        return jsonify({"expand": "transitions", "transitions": transitions})


@bp.post("/rest/api/<int:version>/issue/<key>/transitions")
def do_transition(version: int, key: str):
    body = json_object()
    with locked_issue(key) as (s, issue):
        spec = body.get("transition")
        transition_id = spec.get("id") if isinstance(spec, dict) else None
        if transition_id is None or isinstance(transition_id, bool) or not isinstance(transition_id, (str, int)):
            raise JiraError(400, ["Missing 'transition' identifier"])
        transition_id = str(transition_id)
        workflow = s.issue_types[issue.issuetype_id]["workflow"]["transitions"]
        if not any(t["id"] == transition_id for t in workflow):
            raise JiraError(400, [f"Transition id '{transition_id}' is not valid for this issue."])
        transition = next((t for t in s.transitions_from(issue) if t["id"] == transition_id), None)
        if transition is None:
            name = next(t["name"] for t in workflow if t["id"] == transition_id)
            raise JiraError(400, [
                f"It seems that you have tried to perform a workflow operation ({name}) that is not valid for the "
                f"current state of this issue ({issue.key}). The likely cause is that somebody has changed the "
                f"issue recently, please look at the issue history for details."])
        fields_in = body.get("fields") or {}
        if not isinstance(fields_in, dict):
            raise JiraError(400, [INVALID_PAYLOAD])
        unknown = {f: NOT_ON_SCREEN.format(f) for f in fields_in if f != "resolution"}
        if unknown:
            raise JiraError(400, errors=unknown)
        update_in = body.get("update") or {}
        comment_specs = [op.get("add") for op in (update_in.get("comment") or [])
                         if isinstance(op, dict) and "add" in op] if isinstance(update_in, dict) else []
        comments = [new_comment(s, issue, g.user, c, version) for c in comment_specs]
        old_status = issue.status
        issue.status = transition["to"]
        old, new = s.statuses[old_status], s.statuses[issue.status]
        history = s.add_history(issue, g.user, [HistoryItem("status", "jira", "status", old["id"], old_status,
                                                             new["id"], issue.status)])
        fire(issue, "jira:issue_updated", "issue_generic", g.user, changelog=changelog(history),
             comment=s.comment_json(issue, comments[-1], 2) if comments else None)
        return "", 204

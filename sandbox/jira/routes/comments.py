"""Issue comments: list and add, and the comment a write adds through ``update.comment``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify, request

from sandbox.jira.routes.common import INVALID_PAYLOAD, json_object, locked_issue, paging
from sandbox.jira.routes.events import fire
from sandbox.jira.site import Comment, Issue, JiraError, Site, User, adf_text, is_adf, now

bp = Blueprint("comments", __name__)


def _comment_body(body: Any, version: int) -> Any:
    if version == 3:
        if not is_adf(body):
            raise JiraError(400, errors={"comment": "Comment body is not valid!"})
        if not adf_text(body).strip():
            raise JiraError(400, errors={"comment": "Comment body can not be empty!"})
        return body
    if not isinstance(body, str):
        raise JiraError(400, errors={"comment": "Comment body is not valid!"})
    if not body.strip():
        raise JiraError(400, errors={"comment": "Comment body can not be empty!"})
    return body


def new_comment(s: Site, issue: Issue, user: User, spec: Any, version: int) -> Comment:
    if not isinstance(spec, dict):
        raise JiraError(400, [INVALID_PAYLOAD])
    body = _comment_body(spec.get("body"), version)
    visibility = spec.get("visibility")
    if visibility is not None and (not isinstance(visibility, dict) or visibility.get("type") not in
                                   ("group", "role") or not visibility.get("value")):
        raise JiraError(400, errors={"commentLevel": "You are currently not a member of the project role or "
                                                     "group specified."})
    properties = {}
    for prop in spec.get("properties") or []:
        if not isinstance(prop, dict) or not isinstance(prop.get("key"), str):
            raise JiraError(400, [INVALID_PAYLOAD])
        properties[prop["key"]] = prop.get("value")
    moment = now()
    comment = Comment(s.next_comment_id(), user.account_id, body, moment, moment, visibility, properties)
    issue.comments.append(comment)
    issue.updated = moment
    return comment


@bp.get("/rest/api/<int:version>/issue/<key>/comment")
def list_comments(version: int, key: str):
    with locked_issue(key) as (s, issue):
        start, limit = paging(request.args, default_limit=5000, cap=5000)
        comments = list(issue.comments)
        if request.args.get("orderBy", "") in ("-created", "-+created"):
            comments.reverse()
        page = comments[start:start + limit]
        return jsonify({"self": f"{s.base_url}/rest/api/{version}/issue/{issue.id}/comment", "startAt": start,
                        "maxResults": limit, "total": len(comments),
                        "comments": [s.comment_json(issue, c, version) for c in page]})


@bp.post("/rest/api/<int:version>/issue/<key>/comment")
def add_comment(version: int, key: str):
    body = json_object()
    with locked_issue(key) as (s, issue):
        comment = new_comment(s, issue, g.user, body, version)
        fire(issue, "jira:issue_updated", "issue_commented", g.user, comment=s.comment_json(issue, comment, 2))
        return jsonify(s.comment_json(issue, comment, version)), 201

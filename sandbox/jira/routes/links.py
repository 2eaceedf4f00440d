"""Issue links and their types: create, read and delete a link, list the link types; and the links a create or
an edit adds through ``update.issuelinks``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify

from sandbox.jira.routes.comments import new_comment
from sandbox.jira.routes.common import INVALID_PAYLOAD, json_object, site
from sandbox.jira.site import Issue, IssueLink, JiraError, Site

bp = Blueprint("links", __name__)

_NO_LINK_TYPE = "No issue link type with name '{}' found."


def _issue_ref(s: Site, spec: Any) -> Issue:
    """The issue a link names by ``key`` or ``id`` (Jira's 404 when there is none)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("key", spec.get("id")), str):
        raise JiraError(400, [INVALID_PAYLOAD])
    return s.issue(spec.get("key") or spec["id"])


def _link_type(s: Site, spec: Any) -> dict:
    if not isinstance(spec, dict) or not ({"id", "name"} & set(spec)):
        raise JiraError(400, [INVALID_PAYLOAD])
    found = s.find_link_type(spec)
    if found is None:
        raise JiraError(404, [_NO_LINK_TYPE.format(spec.get("name", spec.get("id")))])
    return found


def _planned_link(s: Site, operation: Any, issue_key: str | None) -> tuple[dict, Issue, bool]:
    """One ``update.issuelinks`` operation of ``issue_key`` (None: an issue being created), checked: ``{"add":
    {"type", "outwardIssue" or "inwardIssue"}}`` as (link type, the other issue, whether it is the outward end)."""
    add = operation.get("add") if isinstance(operation, dict) and set(operation) == {"add"} else None
    if not isinstance(add, dict):
        raise JiraError(400, errors={"issuelinks": "Operation is not supported for field 'issuelinks'."})
    link_type = _link_type(s, add.get("type"))
    if ("outwardIssue" in add) == ("inwardIssue" in add):
        raise JiraError(400, errors={"issuelinks": "Specify either an inward or an outward issue to link to."})
    other = _issue_ref(s, add.get("outwardIssue", add.get("inwardIssue")))
    if other.key == issue_key:
        raise JiraError(400, errors={"issuelinks": "You cannot link an issue to itself."})
    return link_type, other, "outwardIssue" in add


def check_update_links(s: Site, operations: Any, issue_key: str | None = None) -> None:
    """What an ``update.issuelinks`` of ``issue_key`` (None: an issue being created) would add, checked before the
    issue is written (Jira writes all or none)."""
    if not isinstance(operations, list):
        raise JiraError(400, [INVALID_PAYLOAD])
    for operation in operations:
        _planned_link(s, operation, issue_key)


def link_from_update(s: Site, issue: Issue, operation: Any) -> IssueLink:
    """One ``update.issuelinks`` operation of a create or an edit (``check_update_links`` first), the link's other
    end being ``issue``."""
    link_type, other, outward = _planned_link(s, operation, issue.key)
    return s.add_link(link_type, issue, other) if outward else s.add_link(link_type, other, issue)


@bp.post("/rest/api/<int:version>/issueLink")
def create_link(version: int):
    body = json_object()
    s = site()
    with s.lock:
        for name in ("type", "inwardIssue", "outwardIssue"):
            if not isinstance(body.get(name), dict):
                raise JiraError(400, [INVALID_PAYLOAD])
        link_type = _link_type(s, body["type"])
        inward, outward = _issue_ref(s, body["inwardIssue"]), _issue_ref(s, body["outwardIssue"])
        if inward.key == outward.key:
            raise JiraError(400, ["You cannot link an issue to itself."])
        if "comment" in body:
            new_comment(s, outward, g.user, body["comment"], version)
        s.add_link(link_type, inward, outward)
        return "", 201


@bp.get("/rest/api/<int:version>/issueLink/<link_id>")
def get_link(version: int, link_id: str):
    s = site()
    with s.lock:
        return jsonify(s.issue_link_json(s.link(link_id)))


@bp.delete("/rest/api/<int:version>/issueLink/<link_id>")
def delete_link(version: int, link_id: str):
    s = site()
    with s.lock:
        del s.links[s.link(link_id).id]
        return "", 204


@bp.get("/rest/api/<int:version>/issueLinkType")
def list_link_types(version: int):
    s = site()
    return jsonify({"issueLinkTypes": [s.link_type_json(type_id) for type_id in s.link_types]})


@bp.get("/rest/api/<int:version>/issueLinkType/<type_id>")
def get_link_type(version: int, type_id: str):
    s = site()
    if type_id not in s.link_types:
        raise JiraError(404, [f"No issue link type with id '{type_id}' found."])
    return jsonify(s.link_type_json(type_id))

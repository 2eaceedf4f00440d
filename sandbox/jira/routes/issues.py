"""Issues: create, read and edit, with Jira's checks on each field written and the changelog they leave."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify, request

from sandbox.jira.routes.comments import new_comment
from sandbox.jira.routes.common import INVALID_PAYLOAD, NOT_ON_SCREEN, json_object, locked_issue, site
from sandbox.jira.routes.events import changelog, fire
from sandbox.jira.routes.links import check_update_links, link_from_update
from sandbox.jira.site import HistoryItem, JiraError, Site, adf_text, is_adf

SYSTEM_EDITABLE = {"summary", "description", "labels", "reporter"}

bp = Blueprint("issues", __name__)


def _coerce_field(s: Site, field_id: str, value: Any, version: int) -> Any:
    """The stored form of a field value, or a JiraError naming the field."""
    if field_id == "summary":
        if not isinstance(value, str) or not value.strip():
            raise JiraError(400, errors={"summary": "You must specify a summary of the issue."})
        if len(value) > 255:
            raise JiraError(400, errors={"summary": "Summary must be less than 255 characters."})
        return value
    if field_id == "description":
        if value is None:
            return None
        if version == 3 and not is_adf(value):
            raise JiraError(400, errors={"description": "Operation value must be an Atlassian Document (see the "
                                                        "Atlassian Document Format)"})
        if version == 2 and not isinstance(value, str):
            raise JiraError(400, errors={"description": "Operation value must be a string"})
        return value
    if field_id == "labels":
        if not isinstance(value, list) or not all(isinstance(v, str) and v and " " not in v for v in value):
            raise JiraError(400, errors={"labels": "Labels must be a list of words without spaces."})
        return list(value)
    if field_id == "reporter" or s.custom_fields.get(field_id, {}).get("type") == "user":
        if value is None:
            return None
        account = value.get("accountId") if isinstance(value, dict) else None
        if not isinstance(account, str) or account not in s.users:
            raise JiraError(400, errors={field_id: "Specified user does not exist or you do not have required "
                                                   "permissions"})
        return account
    definition = s.custom_fields.get(field_id)
    if definition and definition["type"] == "string":
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise JiraError(400, errors={field_id: "Operation value must be a string"})
        if len(value) > 255:
            raise JiraError(400, errors={field_id: "The entered text is too long. It exceeds the allowed limit of "
                                                   "255 characters."})
        return value
    if definition and definition["type"] == "option":
        if value is None:
            return None
        if not isinstance(value, dict) or not ({"id", "value"} & set(value)):
            raise JiraError(400, errors={field_id: "Could not find valid 'id' or 'value' in the Parent Option "
                                                   "object."})
        for option in definition["options"]:
            if ("id" in value and str(value["id"]) == option["id"]) or value.get("value") == option["value"]:
                return option["id"]
        given = value.get("value", value.get("id"))
        kind = "value" if "value" in value else "id"
        raise JiraError(400, errors={field_id: f"Option {kind} '{given}' is not valid"})
    raise JiraError(400, errors={field_id: NOT_ON_SCREEN.format(field_id)})


def _display(s: Site, field_id: str, raw: Any) -> tuple[str | None, str | None]:
    """(from/to, fromString/toString) of a stored value, as the changelog shows it."""
    if raw is None:
        return None, None
    if field_id == "labels":
        return None, " ".join(raw)
    if field_id == "description":
        return None, adf_text(raw) if is_adf(raw) else raw
    if field_id == "reporter" or s.custom_fields.get(field_id, {}).get("type") == "user":
        return raw, s.users[raw].display_name
    definition = s.custom_fields.get(field_id)
    if definition and definition["type"] == "option":
        return raw, next(o["value"] for o in definition["options"] if o["id"] == raw)
    return None, str(raw)


def _history_item(s: Site, field_id: str, old: Any, new: Any) -> HistoryItem:
    from_value, from_string = _display(s, field_id, old)
    to_value, to_string = _display(s, field_id, new)
    custom = field_id in s.custom_fields
    return HistoryItem(s.custom_fields[field_id]["name"] if custom else field_id, "custom" if custom else "jira",
                       field_id, from_value, from_string, to_value, to_string)


@bp.post("/rest/api/<int:version>/issue")
def create_issue(version: int):
    body = json_object()
    fields_in = body.get("fields")
    if not isinstance(fields_in, dict):
        raise JiraError(400, errors={"project": "Specify a valid project ID or key",
                                     "issuetype": "Specify an issue type"})
    s = site()
    with s.lock:
        errors = {}
        project_spec = fields_in.get("project")
        if not isinstance(project_spec, dict) or not (
                str(project_spec.get("key", "")).upper() == s.project["key"]
                or str(project_spec.get("id", "")) == s.project["id"]):
            errors["project"] = "Specify a valid project ID or key"
        issue_type = s.find_issue_type(fields_in.get("issuetype"))
        if issue_type is None:
            errors["issuetype"] = ("Specify an issue type" if fields_in.get("issuetype") is None
                                   else "The issue type selected is invalid.")
        if errors:
            raise JiraError(400, errors=errors)
        stored: dict[str, Any] = {"reporter": g.user.account_id}
        for field_id, value in fields_in.items():
            if field_id in ("project", "issuetype"):
                continue
            if field_id not in issue_type["fields"]:
                errors[field_id] = NOT_ON_SCREEN.format(field_id)
                continue
            try:
                stored[field_id] = _coerce_field(s, field_id, value, version)
            except JiraError as error:
                errors.update(error.errors)
        for field_id in issue_type.get("required", []):
            if stored.get(field_id) in (None, "", []) and field_id not in errors:
                errors[field_id] = ("You must specify a summary of the issue." if field_id == "summary"
                                    else f"{s.field_name(field_id)} is required.")
        update_in = body.get("update") or {}
        if not isinstance(update_in, dict):
            raise JiraError(400, [INVALID_PAYLOAD])
        for field_id in update_in:
            if field_id != "issuelinks" or field_id not in issue_type["fields"]:
                errors[field_id] = NOT_ON_SCREEN.format(field_id)
        if errors:
            raise JiraError(400, errors=errors)
        if "issuelinks" in update_in:
            check_update_links(s, update_in["issuelinks"])
        issue = s.next_issue(issue_type, stored, g.user)
        # The create screen's links are part of the new issue, as its issue_created webhook shows.
        for operation in update_in.get("issuelinks") or []:
            link_from_update(s, issue, operation)
        for prop in body.get("properties") or []:
            if isinstance(prop, dict) and isinstance(prop.get("key"), str):
                issue.properties[prop["key"]] = prop.get("value")
        fire(issue, "jira:issue_created", "issue_created", g.user)
        return jsonify({"id": issue.id, "key": issue.key,
                        "self": f"{s.base_url}/rest/api/{version}/issue/{issue.id}"}), 201


@bp.get("/rest/api/<int:version>/issue/<key>")
def get_issue(version: int, key: str):
    with locked_issue(key) as (s, issue):
        wanted = s.wanted_fields(request.args.get("fields"), "*all")
        properties = [p.strip() for p in request.args.get("properties", "").split(",") if p.strip()]
        return jsonify(s.issue_json(issue, version, wanted, request.args.get("expand", ""), properties))


@bp.put("/rest/api/<int:version>/issue/<key>")
def edit_issue(version: int, key: str):
    body = json_object()
    with locked_issue(key) as (s, issue):
        fields_in = body.get("fields") or {}
        update_in = body.get("update") or {}
        if not isinstance(fields_in, dict) or not isinstance(update_in, dict):
            raise JiraError(400, [INVALID_PAYLOAD])
        both = set(fields_in) & set(update_in)
        if both:
            name = sorted(both)[0]
            raise JiraError(400, errors={name: f"Field '{name}' cannot be set in both 'fields' and 'update'."})
        editable = set(s.issue_types[issue.issuetype_id]["fields"]) | SYSTEM_EDITABLE
        new_values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        comment_specs = []
        link_specs: list = []
        for field_id, value in fields_in.items():
            if field_id not in editable:
                errors[field_id] = NOT_ON_SCREEN.format(field_id)
                continue
            try:
                new_values[field_id] = _coerce_field(s, field_id, value, version)
            except JiraError as error:
                errors.update(error.errors)
        for field_id, operations in update_in.items():
            if field_id == "comment":
                if not isinstance(operations, list):
                    raise JiraError(400, [INVALID_PAYLOAD])
                comment_specs += [op.get("add") for op in operations if isinstance(op, dict) and "add" in op]
                continue
            if field_id == "issuelinks" and field_id in editable:
                check_update_links(s, operations, issue.key)
                link_specs = operations
                continue
            if field_id not in editable or not isinstance(operations, list):
                errors[field_id] = NOT_ON_SCREEN.format(field_id)
                continue
            current = new_values.get(field_id, issue.fields.get(field_id))
            for operation in operations:
                if not isinstance(operation, dict) or len(operation) != 1:
                    raise JiraError(400, [INVALID_PAYLOAD])
                (verb, value), = operation.items()
                try:
                    if verb == "set":
                        current = _coerce_field(s, field_id, value, version)
                    elif verb in ("add", "remove") and field_id == "labels":
                        labels = list(current or [])
                        _coerce_field(s, "labels", [value], version)
                        if verb == "add" and value not in labels:
                            labels.append(value)
                        if verb == "remove" and value in labels:
                            labels.remove(value)
                        current = labels
                    else:
                        errors[field_id] = f"Operation '{verb}' is not supported for field '{field_id}'."
                except JiraError as error:
                    errors.update(error.errors)
            new_values[field_id] = current
        required = s.issue_types[issue.issuetype_id].get("required", [])
        for field_id in required:
            if field_id in new_values and new_values[field_id] in (None, "", []) and field_id not in errors:
                errors[field_id] = f"{s.field_name(field_id)} is required."
        if errors:
            raise JiraError(400, errors=errors)
        items = [_history_item(s, f, issue.fields.get(f), v) for f, v in new_values.items()
                 if issue.fields.get(f) != v]
        issue.fields.update(new_values)
        for operation in link_specs:
            link_from_update(s, issue, operation)
        comments = [new_comment(s, issue, g.user, spec, version) for spec in comment_specs]
        if items:
            history = s.add_history(issue, g.user, items)
            fire(issue, "jira:issue_updated", "issue_updated", g.user, changelog=changelog(history),
                  comment=s.comment_json(issue, comments[-1], 2) if comments else None)
        elif comments:
            fire(issue, "jira:issue_updated", "issue_commented", g.user,
                  comment=s.comment_json(issue, comments[-1], 2))
        if request.args.get("returnIssue", "").lower() == "true":
            return jsonify(s.issue_json(issue, version)), 200
        return "", 204

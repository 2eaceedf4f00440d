"""The Jira sandbox's Flask app: the REST subset real clients call, answered the way Jira Cloud answers.

``create_app(config)`` reads ``JIRA_URL``, ``JIRA_USER``, ``JIRA_TOKEN`` (and optionally ``JIRA_PAT``, a Bearer
personal access token, by default the same value as ``JIRA_TOKEN``), ``SEED_PATH``, ``WEBHOOK_DELAY_SCALE`` and
``WEBHOOK_TIMEOUT_S``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from sandbox import faults
from sandbox.jira import jql
from sandbox.jira.site import (
    MAX_PROPERTY_CHARS,
    MAX_PROPERTY_KEY,
    WEBHOOK_EVENTS,
    Comment,
    HistoryItem,
    Issue,
    JiraError,
    Site,
    User,
    adf_text,
    is_adf,
    jira_time,
    now,
)
from sandbox.jira.webhooks import Dispatcher

log = logging.getLogger(__name__)

INVALID_PAYLOAD = "Invalid request payload. Refer to the REST API documentation and try again."
NOT_ON_SCREEN = "Field '{}' cannot be set. It is not on the appropriate screen, or unknown."
SYSTEM_EDITABLE = {"summary", "description", "labels", "reporter"}

api = Blueprint("jira_api", __name__)
admin = Blueprint("jira_sandbox_admin", __name__)


def site() -> Site:
    return current_app.extensions["jira_site"]


def dispatcher() -> Dispatcher:
    return current_app.extensions["jira_dispatcher"]


def error_body(status: int, message: str) -> dict:
    return {"errorMessages": [message], "errors": {}}


# --- auth -----------------------------------------------------------------------------------------
def _authenticate() -> User | None:
    header = request.headers.get("Authorization", "")
    config = current_app.config
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            email, _, token = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if email.lower() == config["JIRA_USER"].lower() and hmac.compare_digest(token, config["JIRA_TOKEN"]):
            return site().api_user
    elif scheme.lower() == "bearer":
        if hmac.compare_digest(credentials.strip(), config["JIRA_PAT"]):
            return site().api_user
    return None


@api.before_request
def _require_auth():
    g.user = _authenticate()
    if g.user is None and not request.path.endswith("/serverInfo"):
        response = jsonify(error_body(401, "You are not authenticated. Authentication required to perform this "
                                           "operation."))
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Basic realm="protected-area"'
        return response
    return None


def _json_body(required: bool = True) -> Any:
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise JiraError(400, ["No content to map due to end-of-input"])
        return None
    if request.mimetype != "application/json":
        raise JiraError(415, ["Unsupported Media Type: use Content-Type: application/json"])
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise JiraError(400, [INVALID_PAYLOAD]) from None


def _json_object() -> dict:
    body = _json_body()
    if not isinstance(body, dict):
        raise JiraError(400, [INVALID_PAYLOAD])
    return body


@contextmanager
def _locked_issue(key: str):
    """The site and its issue ``key`` (Jira's 404 when there is none), with the site's lock held."""
    s = site()
    with s.lock:
        yield s, s.issue(key)


def _version(version: int) -> int:
    if version not in (2, 3):
        raise JiraError(404, ["The requested API version is not available."])
    return version


# --- webhooks -------------------------------------------------------------------------------------
def _fire(issue: Issue, event: str, event_type: str, user: User, changelog: dict | None = None,
          comment: dict | None = None) -> None:
    """Queue the deliveries for this change to every matching webhook (call with the site lock held)."""
    s = site()
    issue_body = s.issue_json(issue, 2)
    issue_body.pop("expand", None)
    targets = []
    for webhook in s.webhooks.values():
        wanted = {e.lower() for e in webhook["events"]}
        if not webhook["enabled"]:
            continue
        for name in ([event] + (["comment_created"] if comment is not None and event_type == "issue_commented"
                                else [])):
            if name in wanted and s.matches(issue, webhook["jql"]):
                targets.append((webhook, name))
    for webhook, name in targets:
        payload: dict[str, Any] = {"timestamp": int(now().timestamp() * 1000), "webhookEvent": name}
        if name.startswith("jira:"):
            payload["issue_event_type_name"] = event_type
            payload["user"] = s.user_json(user.account_id, for_webhook=True)
            payload["issue"] = issue_body
            if changelog is not None:
                payload["changelog"] = changelog
            if comment is not None:
                payload["comment"] = comment
        else:
            payload["comment"] = comment
            payload["issue"] = {"id": issue.id, "self": issue_body["self"], "key": issue.key,
                                "fields": {k: issue_body["fields"][k] for k in
                                           ("summary", "issuetype", "project", "status", "reporter")}}
        dispatcher().deliver(dict(webhook), name, payload, issue.key)


# --- field writes ---------------------------------------------------------------------------------
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


def _changelog(history) -> dict:
    return {"id": history.id, "items": [item.render() for item in history.items]}


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


def _new_comment(s: Site, issue: Issue, user: User, spec: Any, version: int) -> Comment:
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


# --- routes: metadata -----------------------------------------------------------------------------
@api.get("/rest/api/<int:version>/serverInfo")
def server_info(version: int):
    _version(version)
    moment = now()
    return jsonify({"baseUrl": site().base_url, "version": "1001.0.0-SNAPSHOT", "versionNumbers": [1001, 0, 0],
                    "deploymentType": "Cloud", "buildNumber": 100289, "buildDate": "2026-11-20T00:00:00.000+0000",
                    "serverTime": jira_time(moment), "scmInfo": "sandbox", "serverTitle": site().server_title})


@api.get("/rest/api/<int:version>/myself")
def myself(version: int):
    _version(version)
    return jsonify(site().myself_json(g.user))


@api.get("/rest/api/<int:version>/field")
def fields(version: int):
    _version(version)
    return jsonify(site().field_list_json())


@api.get("/rest/api/<int:version>/project")
def projects(version: int):
    _version(version)
    return jsonify([site().project_json()])


@api.get("/rest/api/<int:version>/project/<key>")
def project(version: int, key: str):
    _version(version)
    s = site()
    if key.upper() != s.project["key"] and key != s.project["id"]:
        raise JiraError(404, [f"No project could be found with key '{key}'."])
    return jsonify(s.project_json())


@api.get("/rest/api/<int:version>/issue/createmeta")
def createmeta(version: int):
    _version(version)
    s = site()
    keys = {k.strip().upper() for k in request.args.get("projectKeys", "").split(",") if k.strip()}
    ids = {k.strip() for k in request.args.get("projectIds", "").split(",") if k.strip()}
    types = {t.strip().lower() for t in request.args.get("issuetypeNames", "").split(",") if t.strip()}
    types |= {t.strip() for t in request.args.get("issuetypeIds", "").split(",") if t.strip()}
    body = s.createmeta_json("projects.issuetypes.fields" in request.args.get("expand", ""), types or None)
    if (keys and s.project["key"] not in keys) or (ids and s.project["id"] not in ids):
        body["projects"] = []
    return jsonify(body)


# --- routes: issues -------------------------------------------------------------------------------
@api.post("/rest/api/<int:version>/issue")
def create_issue(version: int):
    _version(version)
    body = _json_object()
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
        if errors:
            raise JiraError(400, errors=errors)
        issue = s.next_issue(issue_type, stored, g.user)
        for prop in body.get("properties") or []:
            if isinstance(prop, dict) and isinstance(prop.get("key"), str):
                issue.properties[prop["key"]] = prop.get("value")
        _fire(issue, "jira:issue_created", "issue_created", g.user)
        return jsonify({"id": issue.id, "key": issue.key,
                        "self": f"{s.base_url}/rest/api/{version}/issue/{issue.id}"}), 201


@api.get("/rest/api/<int:version>/issue/<key>")
def get_issue(version: int, key: str):
    _version(version)
    with _locked_issue(key) as (s, issue):
        wanted = s.wanted_fields(request.args.get("fields"), "*all")
        properties = [p.strip() for p in request.args.get("properties", "").split(",") if p.strip()]
        return jsonify(s.issue_json(issue, version, wanted, request.args.get("expand", ""), properties))


@api.put("/rest/api/<int:version>/issue/<key>")
def edit_issue(version: int, key: str):
    _version(version)
    body = _json_object()
    with _locked_issue(key) as (s, issue):
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
        comments = [_new_comment(s, issue, g.user, spec, version) for spec in comment_specs]
        if items:
            history = s.add_history(issue, g.user, items)
            _fire(issue, "jira:issue_updated", "issue_updated", g.user, changelog=_changelog(history),
                  comment=s.comment_json(issue, comments[-1], 2) if comments else None)
        elif comments:
            _fire(issue, "jira:issue_updated", "issue_commented", g.user,
                  comment=s.comment_json(issue, comments[-1], 2))
        if request.args.get("returnIssue", "").lower() == "true":
            return jsonify(s.issue_json(issue, version)), 200
        return "", 204


@api.get("/rest/api/<int:version>/issue/<key>/comment")
def list_comments(version: int, key: str):
    _version(version)
    with _locked_issue(key) as (s, issue):
        start, limit = _paging(request.args, default_limit=5000, cap=5000)
        comments = list(issue.comments)
        if request.args.get("orderBy", "") in ("-created", "-+created"):
            comments.reverse()
        page = comments[start:start + limit]
        return jsonify({"self": f"{s.base_url}/rest/api/{version}/issue/{issue.id}/comment", "startAt": start,
                        "maxResults": limit, "total": len(comments),
                        "comments": [s.comment_json(issue, c, version) for c in page]})


@api.post("/rest/api/<int:version>/issue/<key>/comment")
def add_comment(version: int, key: str):
    _version(version)
    body = _json_object()
    with _locked_issue(key) as (s, issue):
        comment = _new_comment(s, issue, g.user, body, version)
        _fire(issue, "jira:issue_updated", "issue_commented", g.user, comment=s.comment_json(issue, comment, 2))
        return jsonify(s.comment_json(issue, comment, version)), 201


@api.get("/rest/api/<int:version>/issue/<key>/transitions")
def list_transitions(version: int, key: str):
    _version(version)
    with _locked_issue(key) as (s, issue):
        with_fields = "transitions.fields" in request.args.get("expand", "")
        wanted_id = request.args.get("transitionId")
        transitions = [s.transition_json(t, with_fields) for t in s.transitions_from(issue)
                       if wanted_id is None or t["id"] == wanted_id]
        return jsonify({"expand": "transitions", "transitions": transitions})


@api.post("/rest/api/<int:version>/issue/<key>/transitions")
def do_transition(version: int, key: str):
    _version(version)
    body = _json_object()
    with _locked_issue(key) as (s, issue):
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
        comments = [_new_comment(s, issue, g.user, c, version) for c in comment_specs]
        old_status = issue.status
        issue.status = transition["to"]
        old, new = s.statuses[old_status], s.statuses[issue.status]
        history = s.add_history(issue, g.user, [HistoryItem("status", "jira", "status", old["id"], old_status,
                                                             new["id"], issue.status)])
        _fire(issue, "jira:issue_updated", "issue_generic", g.user, changelog=_changelog(history),
              comment=s.comment_json(issue, comments[-1], 2) if comments else None)
        return "", 204


# --- routes: issue entity properties ----------------------------------------------------------------
@api.get("/rest/api/<int:version>/issue/<key>/properties")
def property_keys(version: int, key: str):
    _version(version)
    with _locked_issue(key) as (s, issue):
        return jsonify({"keys": [{"self": f"{s.base_url}/rest/api/{version}/issue/{issue.id}/properties/{k}",
                                  "key": k} for k in issue.properties]})


@api.get("/rest/api/<int:version>/issue/<key>/properties/<path:prop>")
def get_property(version: int, key: str, prop: str):
    _version(version)
    with _locked_issue(key) as (s, issue):
        if prop not in issue.properties:
            raise JiraError(404, [f"The property with key '{prop}' does not exist."])
        return jsonify({"key": prop, "value": issue.properties[prop]})


@api.put("/rest/api/<int:version>/issue/<key>/properties/<path:prop>")
def set_property(version: int, key: str, prop: str):
    _version(version)
    if len(prop) > MAX_PROPERTY_KEY:
        raise JiraError(400, [f"The property key can not be longer than {MAX_PROPERTY_KEY} characters."])
    raw = request.get_data(cache=True)
    if len(raw.decode("utf-8", "replace")) > MAX_PROPERTY_CHARS:
        raise JiraError(400, [f"The property value can not be longer than {MAX_PROPERTY_CHARS} characters."])
    value = _json_body()
    with _locked_issue(key) as (s, issue):
        created = prop not in issue.properties
        issue.properties[prop] = value
        return "", 201 if created else 200


@api.delete("/rest/api/<int:version>/issue/<key>/properties/<path:prop>")
def delete_property(version: int, key: str, prop: str):
    _version(version)
    with _locked_issue(key) as (s, issue):
        if prop not in issue.properties:
            raise JiraError(404, [f"The property with key '{prop}' does not exist."])
        del issue.properties[prop]
        return "", 204


# --- routes: search -------------------------------------------------------------------------------
def _paging(args: dict, default_limit: int = 50, cap: int = 100) -> tuple[int, int]:
    try:
        start = int(args.get("startAt", 0))
        limit = int(args.get("maxResults", default_limit))
    except (TypeError, ValueError):
        raise JiraError(400, ["The value of 'startAt' and 'maxResults' must be integers."]) from None
    if start < 0 or limit < 0:
        raise JiraError(400, ["The value of 'startAt' and 'maxResults' must not be negative."])
    return start, min(limit, cap)


def _search_params() -> dict:
    if request.method == "POST":
        params = dict(_json_object())
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


@api.route("/rest/api/<int:version>/search", methods=["GET", "POST"])
def search(version: int):
    _version(version)
    params = _search_params()
    s = site()
    with s.lock:
        start, limit = _paging(params)
        found, warnings = _run_jql(params)
        wanted = s.wanted_fields(params.get("fields"), "*navigable")
        properties = [p for p in str(params.get("properties") or "").split(",") if p]
        body = {"expand": "schema,names", "startAt": start, "maxResults": limit, "total": len(found),
                "issues": [s.issue_json(i, version, wanted, params.get("expand") or "", properties)
                           for i in found[start:start + limit]]}
        if warnings:
            body["warningMessages"] = warnings
        return jsonify(body)


@api.route("/rest/api/<int:version>/search/jql", methods=["GET", "POST"])
def search_jql(version: int):
    _version(version)
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
        _, limit = _paging({"maxResults": params.get("maxResults", 50)}, cap=5000)
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


# --- routes: admin webhooks ----------------------------------------------------------------------
def _require_admin() -> None:
    if not g.user.is_admin:
        raise JiraError(403, ["You do not have permission to manage webhooks."])


def _webhook_spec(body: dict, partial: dict | None = None) -> dict:
    spec = dict(partial or {})
    errors = {}
    if "name" in body or partial is None:
        if not isinstance(body.get("name"), str) or not body["name"].strip():
            errors["name"] = "Name is required."
        else:
            spec["name"] = body["name"].strip()
    if "url" in body or partial is None:
        url = body.get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if not parts or parts.scheme not in ("http", "https") or not parts.netloc:
            errors["url"] = "URL must be a valid http or https URL."
        else:
            spec["url"] = url
    if "events" in body or partial is None:
        events = body.get("events")
        if not isinstance(events, list) or not events or not all(e in WEBHOOK_EVENTS for e in events):
            errors["events"] = "Events must be a non-empty list of: " + ", ".join(WEBHOOK_EVENTS)
        else:
            spec["events"] = list(events)
    filters = body.get("filters")
    if isinstance(filters, dict) and "issue-related-events-section" in filters:
        spec["jql"] = filters["issue-related-events-section"] or ""
    elif "jqlFilter" in body:
        spec["jql"] = body["jqlFilter"] or ""
    spec.setdefault("jql", "")
    if spec["jql"]:
        try:
            jql.compile_jql(spec["jql"], site(), strict=True)
        except jql.JqlError as error:
            errors["filters"] = str(error)
    for flag in ("excludeBody", "enabled"):
        if flag in body:
            if not isinstance(body[flag], bool):
                errors[flag] = f"'{flag}' must be true or false."
            else:
                spec[flag] = body[flag]
    spec.setdefault("excludeBody", False)
    spec.setdefault("enabled", True)
    if "secret" in body:
        if body["secret"] is not None and not isinstance(body["secret"], str):
            errors["secret"] = "Secret must be a string."
        else:
            spec["secret"] = body["secret"] or None
    spec.setdefault("secret", None)
    if errors:
        raise JiraError(400, errors=errors)
    return spec


def _webhook(webhook_id: int) -> dict:
    found = site().webhooks.get(webhook_id)
    if found is None:
        raise JiraError(404, [f"Webhook with id '{webhook_id}' does not exist."])
    return found


@api.get("/rest/webhooks/1.0/webhook")
def list_webhooks():
    _require_admin()
    s = site()
    with s.lock:
        return jsonify([s.webhook_json(w) for w in s.webhooks.values()])


@api.post("/rest/webhooks/1.0/webhook")
def create_webhook():
    _require_admin()
    body = _json_object()
    s = site()
    with s.lock:
        webhook = s.add_webhook(_webhook_spec(body), g.user)
        return jsonify(s.webhook_json(webhook)), 201


@api.get("/rest/webhooks/1.0/webhook/<int:webhook_id>")
def get_webhook(webhook_id: int):
    _require_admin()
    s = site()
    with s.lock:
        return jsonify(s.webhook_json(_webhook(webhook_id)))


@api.put("/rest/webhooks/1.0/webhook/<int:webhook_id>")
def update_webhook(webhook_id: int):
    _require_admin()
    body = _json_object()
    s = site()
    with s.lock:
        webhook = _webhook(webhook_id)
        webhook.update(_webhook_spec(body, webhook), lastUpdatedUser=g.user.account_id,
                       lastUpdated=int(now().timestamp() * 1000))
        return jsonify(s.webhook_json(webhook))


@api.delete("/rest/webhooks/1.0/webhook/<int:webhook_id>")
def delete_webhook(webhook_id: int):
    _require_admin()
    s = site()
    with s.lock:
        _webhook(webhook_id)
        del s.webhooks[webhook_id]
        return "", 204


# --- test-only admin: webhook deliveries --------------------------------------------------------------
@admin.get("/webhook-deliveries")
def webhook_deliveries():
    try:
        since = int(request.args.get("since", "0"))
    except ValueError:
        return jsonify({"error": "'since' must be an integer"}), 400
    return jsonify(dispatcher().deliveries(since))


@admin.delete("/webhook-deliveries")
def clear_webhook_deliveries():
    dispatcher().clear()
    return "", 204


# --- app factory ------------------------------------------------------------------------------------
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
    faults.install(app, error_body, extra_admin=admin)
    app.register_blueprint(api)

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

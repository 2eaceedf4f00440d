"""Users: read one, search, and their properties (``/user/properties``, keyed by ``accountId``). A user whose
profile hides their email shows none here either, and is not found by it."""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from sandbox.jira.routes.common import paging, site
from sandbox.jira.routes.properties import property_missing, property_value
from sandbox.jira.site import JiraError, User

bp = Blueprint("users", __name__)

NO_USER = "Specified user does not exist or you do not have required permissions"


def _property_owner() -> User:
    """The ``accountId`` parameter's user, whose properties the caller may use (admins: anyone's)."""
    account_id = request.args.get("accountId")
    if not account_id:
        raise JiraError(400, ["The accountId query parameter needs to be provided."])
    user = site().users.get(account_id)
    if user is None:
        raise JiraError(404, [NO_USER])
    if not g.user.is_admin and g.user.account_id != user.account_id:
        raise JiraError(403, ["You do not have permission to access the properties of this user."])
    return user


def _matches(user: User, query: str) -> bool:
    """Jira's user search: a prefix of a word of the display name, or of the email when it is shown."""
    words = user.display_name.lower().split()
    return any(word.startswith(query) for word in words) or (user.email_visible and
                                                             user.email.lower().startswith(query))


@bp.get("/rest/api/<int:version>/user")
def get_user(version: int):
    s = site()
    with s.lock:
        body = s.user_json(request.args.get("accountId"))
    if body is None:
        raise JiraError(404, [NO_USER])
    return jsonify(body)


@bp.get("/rest/api/<int:version>/user/search")
def search_users(version: int):
    query = request.args.get("query")
    account_id = request.args.get("accountId")
    if bool(query) == bool(account_id):
        raise JiraError(400, ["Provide either a query or an accountId."])
    start, limit = paging(request.args, default_limit=50, cap=1000)
    s = site()
    with s.lock:
        found = [u for u in s.users.values() if u.account_id == account_id or (query and _matches(u, query.lower()))]
        return jsonify([s.user_json(u.account_id) for u in found[start:start + limit]])


@bp.get("/rest/api/<int:version>/user/properties")
def user_property_keys(version: int):
    s = site()
    with s.lock:
        user = _property_owner()
        return jsonify({"keys": [
            {"self": f"{s.base_url}/rest/api/{version}/user/properties/{k}?accountId={user.account_id}", "key": k}
            for k in user.properties]})


@bp.get("/rest/api/<int:version>/user/properties/<path:prop>")
def get_user_property(version: int, prop: str):
    with site().lock:
        user = _property_owner()
        if prop not in user.properties:
            raise property_missing(prop)
        return jsonify({"key": prop, "value": user.properties[prop]})


@bp.put("/rest/api/<int:version>/user/properties/<path:prop>")
def set_user_property(version: int, prop: str):
    with site().lock:
        user = _property_owner()
        value = property_value(prop)
        created = prop not in user.properties
        user.properties[prop] = value
        return "", 201 if created else 200


@bp.delete("/rest/api/<int:version>/user/properties/<path:prop>")
def delete_user_property(version: int, prop: str):
    with site().lock:
        user = _property_owner()
        if prop not in user.properties:
            raise property_missing(prop)
        del user.properties[prop]
        return "", 204

"""Users: add a local or directory user with a role and a policy."""

from __future__ import annotations

from flask import Blueprint

from sandbox.leostream.broker import BrokerError, bad_data, missing, split_known
from sandbox.leostream.routes.common import broker, json_object, saved

bp = Blueprint("users", __name__)

USER_FIELDS = {"user_login", "name", "is_local", "password", "auth_server", "role_name", "policy_name", "notes"}


@bp.post("/users")
def add_user():
    body = json_object()
    b = broker()
    with b.lock:
        accepted, extra = split_known(body, USER_FIELDS)
        absent = missing(accepted, ["user_login", "name", "is_local"])
        if accepted.get("is_local") == 1:
            absent += missing(accepted, ["password"])
        elif accepted.get("is_local") == 0:
            absent += missing(accepted, ["auth_server"])
        if absent:
            raise bad_data("Missing required fields", missing_fields=absent)
        errors = []
        if not isinstance(accepted["user_login"], str) or len(accepted["user_login"]) > 64:
            errors.append({"message": "Expected a string of at most 64 characters", "path": "/body/user_login"})
        if accepted["is_local"] not in (0, 1):
            errors.append({"message": "Expected 0 or 1", "path": "/body/is_local"})
        policy_name = accepted.get("policy_name", "Default")
        if not any(p["name"] == policy_name for p in b.policies.values()):
            errors.append({"message": f"Policy \"{policy_name}\" not found", "path": "/body/policy_name"})
        role_name = accepted.get("role_name", "User")
        if role_name not in b.roles:
            errors.append({"message": f"Role \"{role_name}\" not found", "path": "/body/role_name"})
        if errors:
            raise bad_data("User cannot be saved, some input data is not valid.", errors=errors)
        if b.user_named(accepted["user_login"]) is not None:
            raise BrokerError(409, "EXISTS_ALREADY", f"User \"{accepted['user_login']}\" already exists")
        password = accepted.pop("password", None)
        user = {"id": b.next_id("user"), **accepted, "policy_name": policy_name, "role_name": role_name,
                "_password": password}
        b.users[user["id"]] = user
        return saved({"id": user["id"]}, extra)

"""Policies: what a user is offered at sign-in."""

from __future__ import annotations

from flask import Blueprint, jsonify

from sandbox.leostream.broker import MASK, BrokerError, bad_data, missing, split_known, stamp
from sandbox.leostream.routes.common import broker, found, json_object, saved, unique

bp = Blueprint("policies", __name__)

POLICY_FIELDS = {
    "name", "notes", "is_default", "max_desktops", "single_desktop_only", "offer_empty_pools", "alt_credentials",
    "attribute_join", "session_expire_delay", "session_expire_on_lock", "ha_power_on", "ha_start_if_stopped",
    "ha_offer_running_without_hda", "ha_plan_release_id", "ha_plan_protocol_id", "ha_plan_power_control_id",
    "ha_plan_script_id", "ha_login_as", "ha_display_mode", "ha_auto_login", "ha_auto_login_user",
    "ha_auto_login_password", "ha_auto_login_domain", "ha_never_rogue", "ha_logout_rogue", "usb_enabled",
    "usb_mode", "web_client_new_window", "hide_hover_menu", "launch_rdc",
}


@bp.get("/policies")
def list_policies():
    b = broker()
    with b.lock:
        return jsonify([{"id": p["id"], "name": p["name"]} for p in b.policies.values()])


def _policy_values(body: dict) -> tuple[dict, list[str], dict]:
    warnings = {}
    if "pool_assignments" in body:
        warnings["pool_assignments"] = "Policy Pool Assignments should be modified via own API methods"
    accepted, extra = split_known({k: v for k, v in body.items() if k != "pool_assignments"}, POLICY_FIELDS)
    if "name" in accepted and (not isinstance(accepted["name"], str) or not accepted["name"].strip()
                               or len(accepted["name"]) > 100):
        raise bad_data("Policy cannot be saved, some input data is not valid.",
                       errors=[{"message": "Expected a non-empty string of at most 100 characters",
                                "path": "/body/name"}])
    return accepted, extra, warnings


@bp.post("/policies")
def add_policy():
    body = json_object()
    b = broker()
    with b.lock:
        accepted, extra, warnings = _policy_values(body)
        if missing(accepted, ["name"]):
            raise bad_data("Missing required fields", missing_fields=["name"])
        unique(b.policies.values(), accepted["name"])
        policy = b.policy_defaults(accepted, b.next_id("policy"))
        b.policies[policy["id"]] = policy
        return saved(b.policy_full(policy), extra, warnings)


@bp.get("/policies/<int:policy_id>")
def get_policy(policy_id: int):
    b = broker()
    with b.lock:
        return jsonify(b.policy_full(found(b.policies.get(policy_id))))


@bp.put("/policies/<int:policy_id>")
def update_policy(policy_id: int):
    body = json_object()
    b = broker()
    with b.lock:
        policy = found(b.policies.get(policy_id))
        accepted, extra, warnings = _policy_values(body)
        if missing(accepted, ["name"]):
            raise bad_data("Missing required fields", missing_fields=["name"])
        unique(b.policies.values(), accepted["name"], exclude_id=policy_id)
        if accepted.get("ha_auto_login_password") == MASK:
            accepted.pop("ha_auto_login_password")
        policy.update(accepted, updated=stamp())
        return saved(b.policy_full(policy), extra, warnings, status=200)


@bp.delete("/policies/<int:policy_id>")
def delete_policy(policy_id: int):
    b = broker()
    with b.lock:
        policy = found(b.policies.get(policy_id))
        if policy.get("is_default"):
            raise BrokerError(409, "CONFLICT", "The default policy cannot be deleted")
        del b.policies[policy_id]
        for assignment_id in [a["id"] for a in b.assignments.values() if a["policy_id"] == policy_id]:
            del b.assignments[assignment_id]
        return "", 204

"""A policy's pool assignments: which pools the policy offers from, and how."""

from __future__ import annotations

from flask import Blueprint, jsonify

from sandbox.leostream.broker import MASK, bad_data, missing, not_found, split_known, stamp
from sandbox.leostream.routes.common import broker, found, json_object, saved

bp = Blueprint("pool_assignments", __name__)

ASSIGNMENT_FIELDS = {
    "policy_id", "pool_id", "offer_quantity", "favor_previous_assigned", "power_on", "start_if_stopped",
    "offer_running_without_hda", "prevent_release", "plan_release_id", "plan_power_control_id",
    "plan_protocol_id", "plan_script_id", "on_assign_url", "on_assign_url_cb", "on_assign_url_timeout",
    "offer_filter", "attribute_filter", "attribute_join", "backup_pool_id", "display_mode", "login_as",
    "auto_login", "auto_login_user", "auto_login_password", "auto_login_domain", "confirm_power_state",
    "revert_to_snapshot", "kiosk", "logout_rogue", "adjust_timezone",
}


def _assignment_values(body: dict, policy_id: int, current: dict | None) -> tuple[dict, list[str]]:
    b = broker()
    accepted, extra = split_known(body, ASSIGNMENT_FIELDS)
    merged = dict(current or {}, **accepted)
    if missing(merged, ["pool_id"]):
        raise bad_data("Missing required fields", missing_fields=["pool_id"])
    if not isinstance(merged["pool_id"], int) or merged["pool_id"] not in b.pools:
        raise bad_data("Pool assignment cannot be saved, some input data is not valid.",
                       errors=[{"message": "Pool does not exist", "path": "/body/pool_id"}])
    if any(a["pool_id"] == merged["pool_id"] and a["policy_id"] == policy_id and a["id"] != merged.get("id")
           for a in b.assignments.values()):
        raise bad_data("Pool assignment cannot be saved, some input data is not valid.",
                       errors=[{"message": "This pool is already assigned in the policy", "path": "/body/pool_id"}])
    if accepted.get("auto_login_password") == MASK:
        merged.pop("auto_login_password", None)
    merged["policy_id"] = policy_id
    return merged, extra


def _policy(policy_id: int) -> dict:
    return found(broker().policies.get(policy_id))


def _assignment(policy_id: int, assignment_id: int) -> dict:
    assignment = broker().assignments.get(assignment_id)
    if assignment is None or assignment["policy_id"] != policy_id:
        raise not_found()
    return assignment


@bp.get("/policies/<int:policy_id>/pool-assignments")
def list_assignments(policy_id: int):
    b = broker()
    with b.lock:
        _policy(policy_id)
        return jsonify([b.assignment_item(a) for a in b.assignments.values() if a["policy_id"] == policy_id])


@bp.post("/policies/<int:policy_id>/pool-assignments")
def add_assignment(policy_id: int):
    body = json_object()
    b = broker()
    with b.lock:
        _policy(policy_id)
        values, extra = _assignment_values(body, policy_id, None)
        created = stamp()
        assignment = {"offer_quantity": 1, "favor_previous_assigned": 1, "power_on": 0, "start_if_stopped": 1,
                      "offer_running_without_hda": 0, "prevent_release": 0, "plan_release_id": 1,
                      "plan_power_control_id": 1, "plan_protocol_id": 1, "plan_script_id": 0, "on_assign_url": "",
                      "on_assign_url_cb": 0, "on_assign_url_timeout": 5, "backup_pool_id": 0,
                      "attribute_filter": [], "attribute_join": "A", **values, "id": b.next_id("assignment"),
                      "created": created, "updated": created}
        b.assignments[assignment["id"]] = assignment
        return saved(b.assignment_full(assignment), extra)


@bp.get("/policies/<int:policy_id>/pool-assignments/<int:assignment_id>")
def get_assignment(policy_id: int, assignment_id: int):
    b = broker()
    with b.lock:
        return jsonify(b.assignment_full(_assignment(policy_id, assignment_id)))


@bp.put("/policies/<int:policy_id>/pool-assignments/<int:assignment_id>")
def update_assignment(policy_id: int, assignment_id: int):
    body = json_object()
    b = broker()
    with b.lock:
        assignment = _assignment(policy_id, assignment_id)
        values, extra = _assignment_values(body, policy_id, assignment)
        assignment.update(values, updated=stamp())
        return saved(b.assignment_full(assignment), extra, status=200)


@bp.delete("/policies/<int:policy_id>/pool-assignments/<int:assignment_id>")
def delete_assignment(policy_id: int, assignment_id: int):
    b = broker()
    with b.lock:
        _assignment(policy_id, assignment_id)
        del b.assignments[assignment_id]
        return "", 204

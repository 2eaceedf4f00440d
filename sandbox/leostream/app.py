"""The Leostream sandbox's Flask app: the Connection Broker REST API v1 subset under ``/rest/v1``.

``create_app(config)`` reads ``LEOSTREAM_USER`` and ``LEOSTREAM_PASSWORD`` (the API account), ``AWS_ENDPOINT_URL``
(where AWS centers read EC2; moto locally), ``SESSION_TTL_S`` (lifetime of a ``sid`` from login) and ``POLL_SCALE``
(multiplies a center's ``poll_interval`` minutes; 0 turns the poller off).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Blueprint, Flask, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from sandbox import faults
from sandbox.leostream.broker import (
    AWS_SIZES,
    CENTER_ONLINE,
    CONDITIONS,
    MASK,
    Broker,
    BrokerError,
    Poller,
    bad_data,
    missing,
    not_found,
    split_known,
    stamp,
)

log = logging.getLogger(__name__)

api = Blueprint("leostream_api", __name__, url_prefix="/rest/v1")
admin = Blueprint("leostream_sandbox_admin", __name__)

CENTER_FIELDS = {
    "name", "type", "type_label", "vc_datacenter", "_custom_code", "_custom_endpoint", "_custom_name",
    "vc_auth_method", "attached_role", "vc_name", "vc_password", "proxy_address", "notes", "allow_rogue",
    "allow_rogue_policy_id", "continuous_autotag", "init_unavailable", "new_as_deletable", "filter_by_tag_rules",
    "tag_rules_join", "tag_rules", "offer_vms", "poll_interval", "poll_power_state_interval", "wait_inst_status",
    "wait_sys_status", "gateway_id",
}
POOL_FIELDS = {"name", "display_name", "notes", "running_desktops_threshold", "pool_definition", "provision",
               "domain", "log"}
POOL_DEFINITION_FIELDS = {"parent_pool_id", "restrict_by", "vm_tags", "vm_tag_join", "pool_attribute_join",
                          "adhoc_vms", "never_rogue", "server_ids", "attributes"}
POLICY_FIELDS = {
    "name", "notes", "is_default", "max_desktops", "single_desktop_only", "offer_empty_pools", "alt_credentials",
    "attribute_join", "session_expire_delay", "session_expire_on_lock", "ha_power_on", "ha_start_if_stopped",
    "ha_offer_running_without_hda", "ha_plan_release_id", "ha_plan_protocol_id", "ha_plan_power_control_id",
    "ha_plan_script_id", "ha_login_as", "ha_display_mode", "ha_auto_login", "ha_auto_login_user",
    "ha_auto_login_password", "ha_auto_login_domain", "ha_never_rogue", "ha_logout_rogue", "usb_enabled",
    "usb_mode", "web_client_new_window", "hide_hover_menu", "launch_rdc",
}
ASSIGNMENT_FIELDS = {
    "policy_id", "pool_id", "offer_quantity", "favor_previous_assigned", "power_on", "start_if_stopped",
    "offer_running_without_hda", "prevent_release", "plan_release_id", "plan_power_control_id",
    "plan_protocol_id", "plan_script_id", "on_assign_url", "on_assign_url_cb", "on_assign_url_timeout",
    "offer_filter", "attribute_filter", "attribute_join", "backup_pool_id", "display_mode", "login_as",
    "auto_login", "auto_login_user", "auto_login_password", "auto_login_domain", "confirm_power_state",
    "revert_to_snapshot", "kiosk", "logout_rogue", "adjust_timezone",
}
USER_FIELDS = {"user_login", "name", "is_local", "password", "auth_server", "role_name", "policy_name", "notes"}


def broker() -> Broker:
    return current_app.extensions["leostream_broker"]


def error_body(status: int, message: str) -> dict:
    codes = {401: "UNAUTHORIZED", 403: "INSUFFICIENT_PERMISSIONS", 409: "CONFLICT", 503: "SERVICE_UNAVAILABLE"}
    return {"error_status": codes.get(status, "BAD_DATA" if status < 500 else "SERVICE_UNAVAILABLE"),
            "error_message": message}


def _json_object(allow_form: bool = False) -> dict:
    if allow_form and request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return request.form.to_dict()
    raw = request.get_data(cache=True)
    try:
        body = json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError):
        raise bad_data("Invalid JSON in the request body") from None
    if not isinstance(body, dict):
        raise bad_data("The request body must be a JSON object")
    return body


def _created(stored: dict, extra_fields: list[str], warnings: dict | None = None, status: int = 201):
    body: dict[str, Any] = {"stored_data": stored}
    if warnings:
        body["warnings"] = warnings
    if extra_fields:
        body["extra_fields"] = extra_fields
    return jsonify(body), status


def _unique(items, name: str, exclude_id: int | None = None, key=lambda item: item["name"]) -> None:
    if any(key(item) == name and item["id"] != exclude_id for item in items):
        raise BrokerError(409, "NOT_UNIQUE", "Listed fields should contain only unique values", items=["name"])


# --- auth -----------------------------------------------------------------------------------------
@api.before_request
def _require_session():
    if request.path.endswith("/session/login"):
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, sid = header.partition(" ")
    g.session = broker().session(sid.strip() if scheme.lower() == "bearer" else None)
    return None


@api.post("/session/login")
def login():
    body = _json_object(allow_form=True)
    absent = missing(body, ["user_login", "password"])
    if absent:
        raise bad_data("Missing required fields", missing_fields=absent)
    errors = [{"message": "Expected string", "path": f"/body/{name}"} for name in ("user_login", "password")
              if not isinstance(body[name], str)]
    if not errors and not 3 <= len(body["password"]) <= 100:
        errors.append({"message": "String is too short: 3/100.", "path": "/body/password"})
    if not errors and len(body["user_login"]) > 64:
        errors.append({"message": "String is too long: 64.", "path": "/body/user_login"})
    if errors:
        raise bad_data("Invalid login data", errors=errors)
    return jsonify({"sid": broker().login(body["user_login"], body["password"])})


@api.post("/session/logout")
def logout():
    broker().logout(g.session.sid)
    return jsonify({"message": "Signed out user"})


# --- system ---------------------------------------------------------------------------------------
@api.get("/system/health")
def health():
    ok = {"msg": "OK"}
    return jsonify({"components": {"auth": dict(ok, reachable=1), "db_external": None,
                                   "db_internal": dict(ok, reachable=1),
                                   "load": dict(ok, avg_1=0.05, avg_5=0.03, avg_15=0.01),
                                   "redis": dict(ok, running=1), "work_queue": dict(ok, running=1)},
                    "broker": {"hostname": broker().hostname, "msg": "OK"}})


# --- centers --------------------------------------------------------------------------------------
def _center_definition(body: dict, current: dict | None) -> tuple[dict, list[str]]:
    definition = body.get("center_definition")
    if not isinstance(definition, dict):
        raise bad_data("Missing required fields", missing_fields=["center_definition"])
    accepted, extra = split_known(definition, CENTER_FIELDS)
    extra = [f"center_definition.{name}" for name in extra] + sorted(k for k in body if k != "center_definition")
    merged = dict(current or {}, **accepted)
    if accepted.get("vc_password") == MASK:  # an echoed mask keeps the stored secret
        merged.pop("vc_password")
    absent = missing(merged, ["name", "vc_datacenter", "vc_auth_method"])
    if merged.get("vc_auth_method") == "access_key":
        absent += missing(merged, ["vc_name"]) + ([] if current else missing(merged, ["vc_password"]))
    if absent:
        raise bad_data("Missing required fields", missing_fields=absent)
    errors = []
    if merged.get("type", "amazon") != "amazon":
        errors.append({"message": "Center type must be 'amazon'", "path": "/body/center_definition/type"})
    if merged["vc_auth_method"] not in ("access_key", "attached_role"):
        errors.append({"message": "Must be 'access_key' or 'attached_role'",
                       "path": "/body/center_definition/vc_auth_method"})
    poll = merged.get("poll_interval", 0)
    if not isinstance(poll, int) or poll < 0:
        errors.append({"message": "Expected a non-negative integer", "path": "/body/center_definition/poll_interval"})
    if errors:
        raise bad_data("Center cannot be saved, some input data is not valid.", errors=errors)
    return merged, extra


@api.get("/centers")
def list_centers():
    b = broker()
    with b.lock:
        return jsonify([b.center_item(c) for c in b.centers.values()])


@api.post("/centers/amazon")
def add_center():
    body = _json_object()
    b = broker()
    with b.lock:
        definition, extra = _center_definition(body, None)
        _unique([{"id": c["id"], "name": c["center_definition"]["name"]} for c in b.centers.values()],
                definition["name"])
        created = stamp()
        center_id = b.next_id("center")
        secret = definition.pop("vc_password", "")
        stored_definition = {
            "allow_rogue": 0, "allow_rogue_policy_id": 0, "attached_role": "", "continuous_autotag": 0,
            "enable_syslog": 0, "enable_syslog_relay": 0, "gateway_id": 0, "init_unavailable": 0, "ip": "",
            "ldap_filter": "", "ldap_subtree": "", "max_remote_desktop_sessions": 0, "new_as_deletable": 0,
            "notes": "", "offer_vms": 1, "pcoip_ssh_password": "", "poll_interval": 0, "poll_power_state_interval": 0,
            "proxy_address": "", "remote_authentication_id": 0, "rpc_port": 0, "short_hostname_lookup": 0,
            "syslog_forward_to_addr": "", "vc_custom_fields": [], "vc_domain": "", "vc_name": "",
            "vc_project_domain": "", "vc_url": "", "vc_version": "", "vm_id": None, "wait_inst_status": 0,
            "wait_sys_status": 0, **definition, "type": "amazon", "type_label": "Amazon Web Services",
            "flavor": "Z", "vc_password": "",
        }
        center = {
            "id": center_id, "uuid": f"00000000-0000-4000-8000-{center_id:012d}", "created": created,
            "updated": created, "online": 1, "status": CENTER_ONLINE[0], "status_label": CENTER_ONLINE[1],
            "active": 1, "needs_upgrade": 0, "product_id": 0, "center_definition": stored_definition,
            "center_info": {"aws_sizes": list(AWS_SIZES), "aws_sub_nets": [], "aws_sec_groups": [],
                            "os": "Amazon Web Services", "os_version": ""},
            "images": [], "_secret": secret,
        }
        b.refresh_center_info(center)
        b.centers[center_id] = center
        return _created(_public(b.center_full(center)), extra)


def _public(center: dict) -> dict:
    return {k: v for k, v in center.items() if not k.startswith("_")}


@api.get("/centers/<int:center_id>")
def get_center(center_id: int):
    b = broker()
    with b.lock:
        center = b.centers.get(center_id) or _raise(not_found())
        return jsonify(_public(b.center_full(center, short=request.args.get("short") == "1")))


@api.put("/centers/amazon/<int:center_id>")
def update_center(center_id: int):
    body = _json_object()
    b = broker()
    with b.lock:
        center = b.centers.get(center_id) or _raise(not_found())
        current = {k: v for k, v in center["center_definition"].items() if k in CENTER_FIELDS}
        definition, extra = _center_definition(body, current)
        _unique([{"id": c["id"], "name": c["center_definition"]["name"]} for c in b.centers.values()],
                definition["name"], exclude_id=center_id)
        if "vc_password" in definition:
            center["_secret"] = definition.pop("vc_password")
        center["center_definition"].update(definition)
        center["updated"] = stamp()
        b.refresh_center_info(center)
        return _created(_public(b.center_full(center)), extra, status=200)


@api.delete("/centers/<int:center_id>")
def delete_center(center_id: int):
    b = broker()
    with b.lock:
        b.centers.pop(center_id, None) or _raise(not_found())
        for desktop in [d for d in b.desktops.values() if d.center_id == center_id]:
            del b.desktops[desktop.id]
        return "", 204


@api.post("/centers/<int:center_id>/scan")
def scan_center(center_id: int):
    b = broker()
    job_id = b.start_scan(center_id)
    name = b.centers[center_id]["center_definition"]["name"]
    return jsonify({"is_scanning": 1, "job_id": job_id,
                    "message": f"A job to scan the \"{name}\" center was successfully submitted"}), 202


# --- pools ----------------------------------------------------------------------------------------
def _pool_values(body: dict, current: dict | None) -> tuple[dict, list[str]]:
    accepted, extra = split_known(body, POOL_FIELDS)
    merged = dict(current or {}, **accepted)
    absent = missing(merged, ["name", "pool_definition"])
    if absent:
        raise bad_data("Missing required fields", missing_fields=absent)
    definition = merged["pool_definition"]
    if not isinstance(definition, dict):
        raise bad_data("Pool cannot be saved, some input data is not valid.",
                       errors=[{"message": "Expected object", "path": "/body/pool_definition"}])
    definition, extra_definition = split_known(definition, POOL_DEFINITION_FIELDS)
    extra += [f"pool_definition.{name}" for name in extra_definition]
    if "restrict_by" not in definition:
        raise bad_data("Missing required fields", missing_fields=["pool_definition.restrict_by"])
    definition.setdefault("parent_pool_id", 1)
    definition.setdefault("pool_attribute_join", "A")
    definition.setdefault("never_rogue", 0)
    errors = _pool_definition_errors(definition)
    if not isinstance(merged["name"], str) or len(merged["name"]) > 100:
        errors.append({"message": "Expected a string of at most 100 characters", "path": "/body/name"})
    if errors:
        raise bad_data("Pool cannot be saved, some input data is not valid.", errors=errors)
    merged["pool_definition"] = definition
    merged.setdefault("provision", {"provision_on_off": 0})
    return merged, extra


def _pool_definition_errors(definition: dict) -> list[dict]:
    b = broker()
    errors = []
    restrict_by = definition["restrict_by"]
    path = "/body/pool_definition"
    if definition["parent_pool_id"] not in b.pools:
        errors.append({"message": "Parent pool does not exist", "path": f"{path}/parent_pool_id"})
    if restrict_by == "A":
        attributes = definition.get("attributes")
        if not isinstance(attributes, list) or not attributes:
            errors.append({"message": "At least one attribute is required", "path": f"{path}/attributes"})
        else:
            for index, attribute in enumerate(attributes):
                if not isinstance(attribute, dict) or attribute.get("condition_type") not in CONDITIONS \
                        or not attribute.get("vm_table_field"):
                    errors.append({"message": "Each attribute needs vm_table_field, condition_type (one of "
                                              + ", ".join(CONDITIONS) + ") and text_to_match",
                                   "path": f"{path}/attributes/{index}"})
        if definition.get("pool_attribute_join") not in ("A", "O"):
            errors.append({"message": "Must be 'A' or 'O'", "path": f"{path}/pool_attribute_join"})
    elif restrict_by == "C":
        ids = definition.get("server_ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, int) and i in b.centers for i in ids):
            errors.append({"message": "server_ids must list existing center IDs", "path": f"{path}/server_ids"})
    elif restrict_by == "H":
        ids = definition.get("adhoc_vms")
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            errors.append({"message": "adhoc_vms must list desktop IDs", "path": f"{path}/adhoc_vms"})
    else:
        errors.append({"message": "The sandbox supports restrict_by 'A', 'C' and 'H'", "path": f"{path}/restrict_by"})
    return errors


@api.get("/pools")
def list_pools():
    b = broker()
    with b.lock:
        root = request.args.get("id", type=int)
        if request.args.get("as_tree") == "1":
            return jsonify(b.pool_tree(root if root in b.pools else 1))
        pools = [p for p in b.pools.values() if root is None or p["id"] == root]
        return jsonify([b.pool_item(p) for p in pools])


@api.post("/pools")
def add_pool():
    body = _json_object()
    b = broker()
    with b.lock:
        values, extra = _pool_values(body, None)
        _unique(b.pools.values(), values["name"])
        created = stamp()
        pool = {"id": b.next_id("pool"), "display_name": "", "notes": "", "read_only": 0, "is_root": 0,
                "pool_type": "D", "running_desktops_threshold": 0, "domain": {"domain_join": 0},
                "log": {"log_information_threshold": 0, "log_warning_threshold": 0, "log_error_threshold": 0},
                "created": created, "updated": created, **values}
        b.pools[pool["id"]] = pool
        return _created(b.pool_full(pool), extra)


@api.get("/pools/<int:pool_id>")
def get_pool(pool_id: int):
    b = broker()
    with b.lock:
        pool = b.pools.get(pool_id) or _raise(not_found())
        return jsonify(b.pool_full(pool))


@api.put("/pools/<int:pool_id>")
def update_pool(pool_id: int):
    body = _json_object()
    b = broker()
    with b.lock:
        pool = b.pools.get(pool_id) or _raise(not_found())
        if pool.get("read_only"):
            raise BrokerError(409, "CONFLICT", "The pool is read-only")
        values, extra = _pool_values(body, {k: v for k, v in pool.items() if k in POOL_FIELDS})
        _unique(b.pools.values(), values["name"], exclude_id=pool_id)
        pool.update(values, updated=stamp())
        return _created(b.pool_full(pool), extra, status=200)


@api.delete("/pools/<int:pool_id>")
def delete_pool(pool_id: int):
    b = broker()
    with b.lock:
        pool = b.pools.get(pool_id) or _raise(not_found())
        if pool.get("is_root"):
            raise BrokerError(409, "CONFLICT", "The root pool cannot be deleted")
        if any(a["pool_id"] == pool_id for a in b.assignments.values()):
            raise BrokerError(409, "CONFLICT", "The pool is used by a policy pool assignment")
        if any(p["pool_definition"].get("parent_pool_id") == pool_id for p in b.pools.values()):
            raise BrokerError(409, "CONFLICT", "The pool has sub-pools")
        del b.pools[pool_id]
        return "", 204


# --- policies -------------------------------------------------------------------------------------
@api.get("/policies")
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


@api.post("/policies")
def add_policy():
    body = _json_object()
    b = broker()
    with b.lock:
        accepted, extra, warnings = _policy_values(body)
        if missing(accepted, ["name"]):
            raise bad_data("Missing required fields", missing_fields=["name"])
        _unique(b.policies.values(), accepted["name"])
        policy = b._policy_defaults(accepted, b.next_id("policy"))
        b.policies[policy["id"]] = policy
        return _created(b.policy_full(policy), extra, warnings)


@api.get("/policies/<int:policy_id>")
def get_policy(policy_id: int):
    b = broker()
    with b.lock:
        return jsonify(b.policy_full(b.policies.get(policy_id) or _raise(not_found())))


@api.put("/policies/<int:policy_id>")
def update_policy(policy_id: int):
    body = _json_object()
    b = broker()
    with b.lock:
        policy = b.policies.get(policy_id) or _raise(not_found())
        accepted, extra, warnings = _policy_values(body)
        if missing(accepted, ["name"]):
            raise bad_data("Missing required fields", missing_fields=["name"])
        _unique(b.policies.values(), accepted["name"], exclude_id=policy_id)
        if accepted.get("ha_auto_login_password") == MASK:
            accepted.pop("ha_auto_login_password")
        policy.update(accepted, updated=stamp())
        return _created(b.policy_full(policy), extra, warnings, status=200)


@api.delete("/policies/<int:policy_id>")
def delete_policy(policy_id: int):
    b = broker()
    with b.lock:
        policy = b.policies.get(policy_id) or _raise(not_found())
        if policy.get("is_default"):
            raise BrokerError(409, "CONFLICT", "The default policy cannot be deleted")
        del b.policies[policy_id]
        for assignment_id in [a["id"] for a in b.assignments.values() if a["policy_id"] == policy_id]:
            del b.assignments[assignment_id]
        return "", 204


# --- pool assignments -----------------------------------------------------------------------------
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
    return broker().policies.get(policy_id) or _raise(not_found())


def _assignment(policy_id: int, assignment_id: int) -> dict:
    assignment = broker().assignments.get(assignment_id)
    if assignment is None or assignment["policy_id"] != policy_id:
        raise not_found()
    return assignment


@api.get("/policies/<int:policy_id>/pool-assignments")
def list_assignments(policy_id: int):
    b = broker()
    with b.lock:
        _policy(policy_id)
        return jsonify([b.assignment_item(a) for a in b.assignments.values() if a["policy_id"] == policy_id])


@api.post("/policies/<int:policy_id>/pool-assignments")
def add_assignment(policy_id: int):
    body = _json_object()
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
        return _created(b.assignment_full(assignment), extra)


@api.get("/policies/<int:policy_id>/pool-assignments/<int:assignment_id>")
def get_assignment(policy_id: int, assignment_id: int):
    b = broker()
    with b.lock:
        return jsonify(b.assignment_full(_assignment(policy_id, assignment_id)))


@api.put("/policies/<int:policy_id>/pool-assignments/<int:assignment_id>")
def update_assignment(policy_id: int, assignment_id: int):
    body = _json_object()
    b = broker()
    with b.lock:
        assignment = _assignment(policy_id, assignment_id)
        values, extra = _assignment_values(body, policy_id, assignment)
        assignment.update(values, updated=stamp())
        return _created(b.assignment_full(assignment), extra, status=200)


@api.delete("/policies/<int:policy_id>/pool-assignments/<int:assignment_id>")
def delete_assignment(policy_id: int, assignment_id: int):
    b = broker()
    with b.lock:
        _assignment(policy_id, assignment_id)
        del b.assignments[assignment_id]
        return "", 204


# --- users ----------------------------------------------------------------------------------------
@api.post("/users")
def add_user():
    body = _json_object()
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
        if any(u["user_login"].lower() == accepted["user_login"].lower() for u in b.users.values()):
            raise BrokerError(409, "EXISTS_ALREADY", f"User \"{accepted['user_login']}\" already exists")
        password = accepted.pop("password", None)
        user = {"id": b.next_id("user"), **accepted, "policy_name": policy_name, "role_name": role_name,
                "_password": password}
        b.users[user["id"]] = user
        return _created({"id": user["id"]}, extra)


# --- test-only admin hooks ------------------------------------------------------------------------
@admin.get("/health")
def sandbox_health():
    return jsonify({"status": "ok"})


@admin.post("/sign-in")
def sandbox_sign_in():
    body = _json_object()
    if not isinstance(body.get("user_login"), str):
        raise bad_data("Missing required fields", missing_fields=["user_login"])
    return jsonify(broker().sign_in(body["user_login"]))


@admin.post("/sign-out")
def sandbox_sign_out():
    body = _json_object()
    if not isinstance(body.get("user_login"), str):
        raise bad_data("Missing required fields", missing_fields=["user_login"])
    return jsonify({"released": broker().release(body["user_login"])})


@admin.post("/sessions/expire")
def sandbox_expire_sessions():
    return jsonify({"expired": broker().expire_sessions()})


@admin.get("/desktops")
def sandbox_desktops():
    b = broker()
    with b.lock:
        return jsonify([dict(d.vm_item(), instance_id=d.instance_id, center_id=d.center_id, ip=d.ip,
                             tags=d.tags) for d in b.desktops.values()])


@admin.get("/users")
def sandbox_users():
    b = broker()
    with b.lock:
        return jsonify([{k: v for k, v in u.items() if not k.startswith("_")} for u in b.users.values()])


def _raise(error: Exception):
    raise error


# --- app factory ------------------------------------------------------------------------------------
def create_app(config: dict | None = None) -> Flask:
    app = Flask("sandbox.leostream")
    app.config.update({"LEOSTREAM_USER": "vdi-api", "LEOSTREAM_PASSWORD": "", "AWS_ENDPOINT_URL": None,
                       "SESSION_TTL_S": 3600.0, "POLL_SCALE": 1.0})
    app.config.update(config or {})
    if not app.config["LEOSTREAM_PASSWORD"]:
        raise ValueError("the Leostream sandbox needs LEOSTREAM_PASSWORD (the API account's password)")
    app.json.sort_keys = False
    broker_ = Broker(app.config["LEOSTREAM_USER"], app.config["LEOSTREAM_PASSWORD"],
                     app.config["AWS_ENDPOINT_URL"], float(app.config["SESSION_TTL_S"]))
    app.extensions["leostream_broker"] = broker_
    if float(app.config["POLL_SCALE"]) > 0:
        poller = Poller(broker_, float(app.config["POLL_SCALE"]))
        poller.start()
        app.extensions["leostream_poller"] = poller
    faults.install(app, error_body, extra_admin=admin)
    app.register_blueprint(api)

    @app.errorhandler(BrokerError)
    def _broker_error(error: BrokerError):
        body = error.body()
        if body is None:
            return "", error.status
        response = jsonify(body)
        response.status_code = error.status
        return response

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        if error.code in (404, 405):
            return "", 404
        response = jsonify({"error_status": "BAD_DATA", "error_message": error.name})
        response.status_code = error.code or 400
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("unhandled error in the Leostream sandbox on %s %s", request.method, request.path)
        response = jsonify({"error_status": "SERVICE_UNAVAILABLE", "error_message": "Service unavailable"})
        response.status_code = 503
        return response

    return app

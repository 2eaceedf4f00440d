"""Centers (AWS only): add, read, change, remove, and scan one for its instances."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from sandbox.leostream.broker import AWS_SIZES, CENTER_ONLINE, MASK, bad_data, missing, split_known, stamp
from sandbox.leostream.routes.common import broker, found, json_object, saved, unique

bp = Blueprint("centers", __name__)

CENTER_FIELDS = {
    "name", "type", "type_label", "vc_datacenter", "_custom_code", "_custom_endpoint", "_custom_name",
    "vc_auth_method", "attached_role", "vc_name", "vc_password", "proxy_address", "notes", "allow_rogue",
    "allow_rogue_policy_id", "continuous_autotag", "init_unavailable", "new_as_deletable", "filter_by_tag_rules",
    "tag_rules_join", "tag_rules", "offer_vms", "poll_interval", "poll_power_state_interval", "wait_inst_status",
    "wait_sys_status", "gateway_id",
}


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


@bp.get("/centers")
def list_centers():
    b = broker()
    with b.lock:
        return jsonify([b.center_item(c) for c in b.centers.values()])


@bp.post("/centers/amazon")
def add_center():
    body = json_object()
    b = broker()
    with b.lock:
        definition, extra = _center_definition(body, None)
        unique([{"id": c["id"], "name": c["center_definition"]["name"]} for c in b.centers.values()],
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
        return saved(_public(b.center_full(center)), extra)


def _public(center: dict) -> dict:
    return {k: v for k, v in center.items() if not k.startswith("_")}


@bp.get("/centers/<int:center_id>")
def get_center(center_id: int):
    b = broker()
    with b.lock:
        center = found(b.centers.get(center_id))
        return jsonify(_public(b.center_full(center, short=request.args.get("short") == "1")))


@bp.put("/centers/amazon/<int:center_id>")
def update_center(center_id: int):
    body = json_object()
    b = broker()
    with b.lock:
        center = found(b.centers.get(center_id))
        current = {k: v for k, v in center["center_definition"].items() if k in CENTER_FIELDS}
        definition, extra = _center_definition(body, current)
        unique([{"id": c["id"], "name": c["center_definition"]["name"]} for c in b.centers.values()],
                definition["name"], exclude_id=center_id)
        if "vc_password" in definition:
            center["_secret"] = definition.pop("vc_password")
        center["center_definition"].update(definition)
        center["updated"] = stamp()
        b.refresh_center_info(center)
        return saved(_public(b.center_full(center)), extra, status=200)


@bp.delete("/centers/<int:center_id>")
def delete_center(center_id: int):
    b = broker()
    with b.lock:
        found(b.centers.pop(center_id, None))
        for desktop in [d for d in b.desktops.values() if d.center_id == center_id]:
            del b.desktops[desktop.id]
        return "", 204


@bp.post("/centers/<int:center_id>/scan")
def scan_center(center_id: int):
    b = broker()
    job_id = b.start_scan(center_id)
    name = b.centers[center_id]["center_definition"]["name"]
    return jsonify({"is_scanning": 1, "job_id": job_id,
                    "message": f"A job to scan the \"{name}\" center was successfully submitted"}), 202

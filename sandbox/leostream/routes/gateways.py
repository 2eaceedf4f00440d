"""Gateways: the Leostream Gateways the broker knows (list, add, read one). The sandbox runs no gateway: each is
a record, shown online."""

from __future__ import annotations

from flask import Blueprint, jsonify

from sandbox.leostream.broker import bad_data, missing, split_known, stamp
from sandbox.leostream.routes.common import broker, found, json_object, saved, unique

bp = Blueprint("gateways", __name__)

GATEWAY_FIELDS = {"name", "address", "address_private", "load_balancer_id", "use_src_ip", "forward_to", "signature",
                  "notes"}
# (field, longest) for the document's text fields
TEXT_LIMITS = (("name", 100), ("address", 255), ("address_private", 255), ("forward_to", 255), ("signature", 100),
               ("notes", 4095))


def _gateway_values(body: dict) -> tuple[dict, list[str]]:
    accepted, extra = split_known(body, GATEWAY_FIELDS)
    absent = missing(accepted, ["name", "address"])
    if absent:
        raise bad_data("Missing required fields", missing_fields=absent)
    errors = [{"message": f"Expected a string of at most {longest} characters", "path": f"/body/{name}"}
              for name, longest in TEXT_LIMITS
              if name in accepted and (not isinstance(accepted[name], str) or len(accepted[name]) > longest)]
    if accepted.get("use_src_ip", 0) not in (0, 1, 2):
        errors.append({"message": "Expected 0, 1 or 2", "path": "/body/use_src_ip"})
    if accepted.get("load_balancer_id", 0) != 0:  # the sandbox has no gateway clusters
        errors.append({"message": "Gateway cluster does not exist", "path": "/body/load_balancer_id"})
    if errors:
        raise bad_data("Gateway cannot be saved, some input data is not valid.", errors=errors)
    return accepted, extra


@bp.get("/gateways")
def list_gateways():
    b = broker()
    with b.lock:
        return jsonify([{"id": g["id"], "name": g["name"]} for g in b.gateways.values()])


@bp.post("/gateways")
def add_gateway():
    body = json_object()
    b = broker()
    with b.lock:
        values, extra = _gateway_values(body)
        unique(b.gateways.values(), values["name"])
        created = stamp()
        gateway = {"id": b.next_id("gateway"), "address_private": "", "load_balancer_id": 0, "use_src_ip": 0,
                   "notes": "", **values, "online": 1, "version": "", "created": created, "updated": created}
        b.gateways[gateway["id"]] = gateway
        return saved(gateway, extra)


@bp.get("/gateways/<int:gateway_id>")
def get_gateway(gateway_id: int):
    b = broker()
    with b.lock:
        return jsonify(found(b.gateways.get(gateway_id)))

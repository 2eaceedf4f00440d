"""The Leostream sandbox's own test-only API under ``/_sandbox`` (beside the fault and call-log API): health,
a user signing in and out through a client, expiring API sessions, and the desktops and users it holds."""

from __future__ import annotations

from flask import Blueprint, jsonify

from sandbox.leostream.broker import bad_data
from sandbox.leostream.routes.common import broker, json_object

bp = Blueprint("leostream_sandbox_admin", __name__)


@bp.get("/health")
def sandbox_health():
    return jsonify({"status": "ok"})


@bp.post("/sign-in")
def sandbox_sign_in():
    body = json_object()
    if not isinstance(body.get("user_login"), str):
        raise bad_data("Missing required fields", missing_fields=["user_login"])
    return jsonify(broker().sign_in(body["user_login"]))


@bp.post("/sign-out")
def sandbox_sign_out():
    body = json_object()
    if not isinstance(body.get("user_login"), str):
        raise bad_data("Missing required fields", missing_fields=["user_login"])
    return jsonify({"released": broker().release(body["user_login"])})


@bp.post("/sessions/expire")
def sandbox_expire_sessions():
    return jsonify({"expired": broker().expire_sessions()})


@bp.get("/desktops")
def sandbox_desktops():
    b = broker()
    with b.lock:
        return jsonify([dict(d.vm_item(), instance_id=d.instance_id, center_id=d.center_id, ip=d.ip,
                             tags=d.tags) for d in b.desktops.values()])


@bp.get("/users")
def sandbox_users():
    b = broker()
    with b.lock:
        return jsonify([{k: v for k, v in u.items() if not k.startswith("_")} for u in b.users.values()])

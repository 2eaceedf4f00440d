"""The Leostream sandbox's own test-only API under ``/_sandbox`` (beside the fault and call-log API): health,
a user signing in and out through a client, expiring API sessions, the desktops and users it holds, and the
outcomes the first-boot stand-in plays (``sandbox.leostream.first_boot``)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from sandbox.leostream.broker import bad_data
from sandbox.leostream.first_boot import FirstBoot, OutcomeError, parse_outcome
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


def _first_boot() -> FirstBoot:
    return current_app.extensions["leostream_first_boot"]


@bp.post("/first-boot")
def first_boot_expect():
    """``{"issue_key": "VDI-12", "outcome": "done" | "failed" | "never"[, "cause": "..."]}``: the outcome of that
    ticket's next instance."""
    try:
        issue_key, outcome, cause = parse_outcome(json_object())
    except OutcomeError as error:
        raise bad_data(str(error)) from None
    _first_boot().expect(issue_key, outcome, cause)
    return jsonify(dict({"issue_key": issue_key, "outcome": outcome}, **({"cause": cause} if cause else {}))), 201


@bp.get("/first-boot")
def first_boot_list():
    return jsonify(_first_boot().listing())


@bp.delete("/first-boot")
def first_boot_clear():
    _first_boot().clear()
    return "", 204

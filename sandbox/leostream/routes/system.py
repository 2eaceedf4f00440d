"""The broker's own state: ``/system/health``."""

from __future__ import annotations

from flask import Blueprint, jsonify

from sandbox.leostream.routes.common import broker

bp = Blueprint("system", __name__)


@bp.get("/system/health")
def health():
    ok = {"msg": "OK"}
    return jsonify({"components": {"auth": dict(ok, reachable=1), "db_external": None,
                                   "db_internal": dict(ok, reachable=1),
                                   "load": dict(ok, avg_1=0.05, avg_5=0.03, avg_15=0.01),
                                   "redis": dict(ok, running=1), "work_queue": dict(ok, running=1)},
                    "broker": {"hostname": broker().hostname, "msg": "OK"}})

"""The Leostream REST API v1 the sandbox answers under ``/rest/v1``: one blueprint per resource, nested in one
that resolves the caller's session."""

from __future__ import annotations

from flask import Blueprint, g, request

from sandbox.leostream.routes import (centers, gateways, policies, pool_assignments, pools, session, system,
                                      users)
from sandbox.leostream.routes.common import broker

rest = Blueprint("leostream_api", __name__, url_prefix="/rest/v1")
for _resource in (session, system, centers, gateways, pools, policies, pool_assignments, users):
    rest.register_blueprint(_resource.bp)


@rest.before_request
def _require_session():
    if request.path.endswith("/session/login"):
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, sid = header.partition(" ")
    g.session = broker().session(sid.strip() if scheme.lower() == "bearer" else None)
    return None

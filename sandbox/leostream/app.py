"""The Leostream sandbox's Flask app: the Connection Broker REST API v1 subset under ``/rest/v1``.

``create_app(config)`` reads ``LEOSTREAM_USER`` and ``LEOSTREAM_PASSWORD`` (the API account), ``AWS_ENDPOINT_URL``
(where AWS centers read EC2; moto locally), ``SESSION_TTL_S`` (lifetime of a ``sid`` from login), ``POLL_SCALE``
(multiplies a center's ``poll_interval`` minutes; 0 turns the poller off), ``FIRST_BOOT_DELAY_S`` (how long a
desktop's first boot takes) and ``FIRST_BOOT_POLL_S`` (how often the first-boot stand-in looks for new instances;
0 turns it off). The routes live in ``sandbox.leostream.routes``, one module per resource. A path the API does not
route answers 404 with Leostream's JSON error body; an object that does not exist, 404 without a body, as the
vendor's document describes it.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from sandbox import faults
from sandbox.leostream.broker import Broker, BrokerError, Poller
from sandbox.leostream.first_boot import FirstBoot
from sandbox.leostream.routes import rest, sandbox_admin
from sandbox.leostream.routes.common import error_body

log = logging.getLogger(__name__)


def _bearer_sid() -> str | None:
    scheme, _, sid = request.headers.get("Authorization", "").partition(" ")
    return sid.strip() if scheme.lower() == "bearer" else None


def create_app(config: dict | None = None) -> Flask:
    app = Flask("sandbox.leostream")
    app.config.update({"LEOSTREAM_USER": "vdi-api", "LEOSTREAM_PASSWORD": "", "AWS_ENDPOINT_URL": None,
                       "SESSION_TTL_S": 3600.0, "POLL_SCALE": 1.0, "FIRST_BOOT_DELAY_S": 2.0,
                       "FIRST_BOOT_POLL_S": 0.5})
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
    first_boot = FirstBoot(broker_, float(app.config["FIRST_BOOT_DELAY_S"]), float(app.config["FIRST_BOOT_POLL_S"]))
    app.extensions["leostream_first_boot"] = first_boot
    if first_boot.poll_s > 0:
        first_boot.start()
    faults.install(app, error_body, extra_admin=sandbox_admin.bp,
                   expire_session=lambda: broker_.expire_session(_bearer_sid()))
    app.register_blueprint(rest)

    @app.errorhandler(BrokerError)
    def _broker_error(error: BrokerError):
        body = error.body()
        if body is None:
            response = Response(status=error.status)
            del response.headers["Content-Type"]  # no body, so no media type either
            return response
        response = jsonify(body)
        response.status_code = error.status
        return response

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        if error.code in (404, 405):  # no route for this method and path
            response = jsonify({"error_status": "NOT_FOUND",
                                "error_message": f"No such API path: {request.method} {request.path}"})
            response.status_code = 404
            return response
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

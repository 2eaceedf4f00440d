"""The bridge's HTTP surface: ``POST /webhooks/jira``, ``/healthz``, ``/readyz``, ``/metrics``."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import psycopg
from flask import Blueprint, Response, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST
from werkzeug.exceptions import RequestEntityTooLarge

from vdi.states import DeliveryStatus
from vdi.store import deliveries
from webhook_bridge import events, signature

bp = Blueprint("bridge", __name__)

RETRY_HEADER = "X-Atlassian-Webhook-Retry"


def _environ_key(header: str) -> str:
    """Where WSGI puts a request header (any case on the wire): what ``request.headers.get`` reads, minus the
    proxy and the case-insensitive mapping on every call."""
    return "HTTP_" + header.upper().replace("-", "_")


_SIGNATURE_KEY = _environ_key(signature.SIGNATURE_HEADER)
_IDENTIFIER_KEY = _environ_key(events.IDENTIFIER_HEADER)
_RETRY_KEY = _environ_key(RETRY_HEADER)


@dataclass
class Answer:
    """What the webhook endpoint answers, and what its log line says."""

    http_status: int
    outcome: str
    body: dict
    delivery_id: str | None = None
    issue_key: str | None = None
    event: str | None = None
    id_from_body: bool = False
    wake: bool = False


def _refuse(http_status: int, outcome: str, error: str) -> Answer:
    return Answer(http_status, outcome, {"error": error})


_JSON = "application/json"


@bp.post("/webhooks/jira")
def jira_webhook():
    started = time.perf_counter()
    app = current_app._get_current_object()
    req = request._get_current_object()
    environ = req.environ
    bridge = app.extensions["webhook_bridge"]
    answer = _handle(bridge, app.config, req, environ)
    # A small flat dict: json.dumps directly (Flask's jsonify adds a provider, sorting and a newline per call).
    response = Response(json.dumps(answer.body, separators=(",", ":")), answer.http_status, mimetype=_JSON)
    elapsed = time.perf_counter() - started
    bridge.journal.answered(answer.outcome, elapsed, {
        "delivery_id": answer.delivery_id or _unverified_id(environ),
        "issue": answer.issue_key,
        "event": answer.event,
        "outcome": answer.outcome,
        "status": answer.http_status,
        "ms": round(elapsed * 1000, 2),
        "id_from_body": answer.id_from_body,
        "retry": environ.get(_RETRY_KEY, "")[:8] or None,
    })
    if answer.wake and bridge.dispatcher is not None:
        delivery_id = answer.delivery_id
        response.call_on_close(lambda: bridge.dispatcher.wake(delivery_id))
    return response


def _unverified_id(environ) -> str | None:
    """The identifier header of a refused request, shortened (it is logged, never stored)."""
    value = environ.get(_IDENTIFIER_KEY)
    return value[:80] if value else None


def _handle(bridge, config, req, environ) -> Answer:
    limit = config["MAX_CONTENT_LENGTH"]
    content_length = req.content_length
    if content_length is not None and content_length > limit:
        return _refuse(413, "too_large", f"body larger than {limit} bytes")
    # request.mimetype, without the full options parser: the media type before any parameter, lower case.
    if environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower() != "application/json":
        return _refuse(415, "unsupported_media_type", "Content-Type must be application/json")
    try:
        body = req.get_data(cache=False)
    except RequestEntityTooLarge:
        return _refuse(413, "too_large", f"body larger than {limit} bytes")
    if not bridge.secrets:
        # Fail closed, but with a 5xx: Jira retries, so nothing is lost while the secret is being set.
        return _refuse(503, "no_secret", "no webhook secret is configured")
    if not signature.verify(environ.get(_SIGNATURE_KEY), body, bridge.secrets):
        return _refuse(401, "unauthorized", "bad or missing X-Hub-Signature")
    try:
        payload, payload_json = events.parse(body)
        delivery_id, id_from_body = events.delivery_id(environ.get(_IDENTIFIER_KEY), body)
    except events.Malformed as error:
        return _refuse(400, "malformed", str(error))
    facts = events.Facts.of(payload)
    reason = events.staleness(payload, time.time() * 1000, config["REPLAY_WINDOW_S"], config["CLOCK_SKEW_S"])
    decision = events.Decision(None, reason) if reason else bridge.router.decide(facts)
    routed = decision.dag_id is not None
    delivery = deliveries.NewDelivery(
        delivery_id, id_from_body, facts.event, facts.issue_key, payload,
        DeliveryStatus.PENDING if routed else DeliveryStatus.IGNORED, reason=decision.reason,
        dag_id=decision.dag_id, dag_run_id=events.dag_run_id(delivery_id) if routed else None,
        payload_json=payload_json)
    answer = Answer(0, "", {}, delivery_id, facts.issue_key, facts.event[:100], id_from_body)
    try:
        is_new = bridge.recorder.record(delivery)
    except psycopg.OperationalError:  # includes the recorder's NotRecordedInTime
        answer.http_status, answer.outcome = 503, "unavailable"
        answer.body = {"error": "cannot record the delivery now; retry later"}
        return answer
    except psycopg.DataError:
        answer.http_status, answer.outcome, answer.body = 400, "malformed", {"error": "body cannot be stored"}
        return answer
    if not is_new:
        answer.http_status, answer.outcome = 200, "duplicate"
        answer.body = {"status": "duplicate", "delivery_id": delivery_id}
    elif decision.dag_id:
        answer.http_status, answer.outcome, answer.wake = 202, "accepted", True
        answer.body = {"status": "accepted", "delivery_id": delivery_id, "dag_id": decision.dag_id}
    else:
        answer.http_status, answer.outcome = 200, "ignored"
        answer.body = {"status": "ignored", "delivery_id": delivery_id, "reason": decision.reason}
    return answer


@bp.get("/healthz")
def healthz():
    return Response("ok\n", mimetype="text/plain")


@bp.get("/readyz")
def readyz():
    bridge = current_app.extensions["webhook_bridge"]
    checks = {
        "webhook_secret": bool(bridge.secrets),
        "database": bridge.database_ready(),
        "airflow": bridge.airflow is not None and bridge.airflow.healthy(),
    }
    response = jsonify({"ready": all(checks.values()), "checks": checks})
    response.status_code = 200 if all(checks.values()) else 503
    return response


@bp.get("/metrics")
def metrics():
    bridge = current_app.extensions["webhook_bridge"]
    bridge.journal.flush()
    return Response(bridge.metrics.exposition(), mimetype=CONTENT_TYPE_LATEST)

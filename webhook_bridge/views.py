"""The bridge's HTTP surface: ``POST /webhooks/jira``, ``/healthz``, ``/readyz``, ``/metrics``."""

from __future__ import annotations

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


def _refuse(http_status: int, outcome: str, error: str) -> Answer:
    return Answer(http_status, outcome, {"error": error})


@bp.post("/webhooks/jira")
def jira_webhook():
    started = time.perf_counter()
    bridge = current_app.extensions["webhook_bridge"]
    answer = _handle(bridge, current_app.config)
    response = jsonify(answer.body)
    response.status_code = answer.http_status
    elapsed = time.perf_counter() - started
    bridge.journal.answered(answer.outcome, elapsed, {
        "delivery_id": answer.delivery_id or _unverified_id(),
        "issue": answer.issue_key,
        "event": answer.event,
        "outcome": answer.outcome,
        "status": answer.http_status,
        "ms": round(elapsed * 1000, 2),
        "id_from_body": answer.id_from_body,
        "retry": request.headers.get(RETRY_HEADER, "")[:8] or None,
    })
    return response


def _unverified_id() -> str | None:
    """The identifier header of a refused request, shortened (it is logged, never stored)."""
    value = request.headers.get(events.IDENTIFIER_HEADER)
    return value[:80] if value else None


def _handle(bridge, config) -> Answer:
    limit = config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None and request.content_length > limit:
        return _refuse(413, "too_large", f"body larger than {limit} bytes")
    if request.mimetype != "application/json":
        return _refuse(415, "unsupported_media_type", "Content-Type must be application/json")
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        return _refuse(413, "too_large", f"body larger than {limit} bytes")
    if not bridge.secrets:
        # Fail closed, but with a 5xx: Jira retries, so nothing is lost while the secret is being set.
        return _refuse(503, "no_secret", "no webhook secret is configured")
    if not signature.verify(request.headers.get(signature.SIGNATURE_HEADER), body, bridge.secrets):
        return _refuse(401, "unauthorized", "bad or missing X-Hub-Signature")
    try:
        payload, payload_json = events.parse(body)
        delivery_id, id_from_body = events.delivery_id(request.headers.get(events.IDENTIFIER_HEADER), body)
    except events.Malformed as error:
        return _refuse(400, "malformed", str(error))
    facts = events.Facts.of(payload)
    reason = events.staleness(payload, time.time() * 1000, config["REPLAY_WINDOW_S"], config["CLOCK_SKEW_S"])
    decision = events.Decision(None, reason) if reason else bridge.router.decide(facts)
    routed = decision.dag_id is not None
    delivery = deliveries.NewDelivery(
        delivery_id, id_from_body, facts.event, facts.issue_key, payload,
        DeliveryStatus.PENDING if routed else DeliveryStatus.IGNORED, reason=decision.reason,
        dag_id=decision.dag_id, dag_run_id=events.dag_run_id(facts.issue_key, delivery_id) if routed else None,
        note=decision.note, payload_json=payload_json)
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
    elif routed:
        answer.http_status, answer.outcome = 202, "accepted"
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
        "relay": bridge.relay_alive(),
    }
    response = jsonify({"ready": all(checks.values()), "checks": checks})
    response.status_code = 200 if all(checks.values()) else 503
    return response


@bp.get("/metrics")
def metrics():
    bridge = current_app.extensions["webhook_bridge"]
    bridge.journal.flush()
    return Response(bridge.metrics.exposition(), mimetype=CONTENT_TYPE_LATEST)

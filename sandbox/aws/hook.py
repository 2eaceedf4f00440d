"""EC2 faults and EC2's client-token memory, as a WSGI layer around moto's own server app (in moto's process, on
moto's port: no extra hop).

Driven over the same kind of test-only API as the Jira and Leostream sandboxes (sandbox/faults.py), with rules
matched on the EC2 Query API's ``Action`` instead of a path:

- ``POST /_sandbox/faults`` adds a rule (or a list of rules) ``{"action": "RunInstances", "error":
  "InsufficientInstanceCapacity", "status": 500, "message": "...", "latency_ms": 0, "hold_ms": 0,
  "lose_response": false, "times": 1}``. ``action`` is an fnmatch pattern over the action; ``times`` defaults to 1
  (``null``: every matching call). A matching call first waits ``latency_ms``, then either gets ``error`` answered
  in EC2's error XML with the code's HTTP status (``EC2_ERRORS``; ``status`` overrides it, and is required for
  other codes), or is handled by moto and its answer held back ``hold_ms`` (the call has taken effect; the caller
  has not heard), then, with ``lose_response``, left unanswered: the connection closes, as when a response is lost
  on the way (what ``ClientToken`` is for).
- ``GET /_sandbox/faults`` lists the rules with their hit counts; ``DELETE /_sandbox/faults`` removes them all.
- ``GET /_sandbox/calls?action=&since=`` lists the EC2 calls served (action, status, fault, client token: never a
  parameter's value otherwise); ``DELETE /_sandbox/calls`` empties the log.

``ClientToken`` as EC2 honours it (moto ignores it): a ``RunInstances`` repeating a token already used in the
region with the same parameters answers the original reservation again, instances included, even after they
terminated, and launches nothing; the same token with other parameters answers ``IdempotentParameterMismatch``.
EC2 keeps a token for at least 24 hours after its instances terminate; the stand-in keeps it as long as it runs.
A call that failed leaves no token behind, so its retry launches. Other AWS services pass through untouched.
"""

from __future__ import annotations

import fnmatch
import io
import itertools
import json
import re
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qs, parse_qsl
from xml.sax.saxutils import escape

ADMIN_PREFIX = "/_sandbox"
_MAX_CALLS = 5000
# HTTP status and message of the EC2 error codes a fault is usually made of, as EC2 answers them (server errors
# 500/503; the message of InsufficientInstanceCapacity is EC2's own, with the call's instance type).
EC2_ERRORS: dict[str, tuple[int, str]] = {
    "InsufficientInstanceCapacity": (
        500, "We currently do not have sufficient {instance_type} capacity in the Availability Zone you requested "
             "({zone}). Our system will be working on provisioning additional capacity. You can currently get "
             "{instance_type} capacity by not specifying an Availability Zone in your request or choosing "
             "{other_zones}."),
    "RequestLimitExceeded": (503, "Request limit exceeded."),
    "InternalError": (500, "An internal error has occurred."),
    "Unavailable": (503, "The server is overloaded and can't handle the request."),
    "IdempotentParameterMismatch": (
        400, "Arguments on this idempotent request are inconsistent with arguments used in previous request(s)."),
}
# The credential scope of a SigV4 Authorization header: .../<date>/<region>/<service>/aws4_request
_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/]+)/([^/]+)/aws4_request")
_ACTION = re.compile(r"(?:^|&)Action=([^&]*)")
_FORM = "application/x-www-form-urlencoded"


class FaultSpecError(ValueError):
    pass


@dataclass
class Ec2Fault:
    id: int
    action: str
    error: str | None = None
    status: int | None = None
    message: str | None = None
    latency_ms: int = 0
    hold_ms: int = 0
    lose_response: bool = False
    times: int | None = 1
    hits: int = 0

    def matches(self, action: str) -> bool:
        return self.times != 0 and fnmatch.fnmatchcase(action, self.action)


@dataclass
class Ec2Call:
    seq: int
    at: float
    action: str
    region: str
    status: int
    fault: int | None = None
    client_token: str | None = None
    replayed: bool = False


def parse_fault(spec: Any, fault_id: int) -> Ec2Fault:
    if not isinstance(spec, dict):
        raise FaultSpecError("a fault is a JSON object")
    unknown = set(spec) - {"action", "error", "status", "message", "latency_ms", "hold_ms", "lose_response",
                      "times"}
    if unknown:
        raise FaultSpecError(f"unknown fault fields: {', '.join(sorted(unknown))}")
    action = spec.get("action")
    if not isinstance(action, str) or not action:
        raise FaultSpecError("'action' must be an EC2 action name or pattern (RunInstances, Describe*)")
    error = spec.get("error")
    if error is not None and (not isinstance(error, str) or not re.fullmatch(r"[A-Za-z][\w.]*", error)):
        raise FaultSpecError("'error' must be an EC2 error code (InsufficientInstanceCapacity, ...)")
    status = spec.get("status")
    if status is not None and (not isinstance(status, int) or not 400 <= status <= 599):
        raise FaultSpecError("'status' must be an HTTP error status (400-599)")
    if error is not None and status is None and error not in EC2_ERRORS:
        raise FaultSpecError(f"'status' is required for {error} (known codes: {', '.join(sorted(EC2_ERRORS))})")
    message = spec.get("message")
    if message is not None and not isinstance(message, str):
        raise FaultSpecError("'message' must be a string")
    latency_ms, hold_ms = spec.get("latency_ms", 0), spec.get("hold_ms", 0)
    for name, value in (("latency_ms", latency_ms), ("hold_ms", hold_ms)):
        if not isinstance(value, int) or not 0 <= value <= 120_000:
            raise FaultSpecError(f"'{name}' must be between 0 and 120000")
    lose_response = spec.get("lose_response", False)
    if not isinstance(lose_response, bool):
        raise FaultSpecError("'lose_response' must be true or false")
    if error is not None and (lose_response or hold_ms):
        raise FaultSpecError("a fault with an 'error' is not handled by moto: no 'lose_response' or 'hold_ms'")
    times = spec.get("times", 1)
    if times is not None and (not isinstance(times, int) or times < 1):
        raise FaultSpecError("'times' must be a positive count or null")
    if error is None and not lose_response and not latency_ms and not hold_ms:
        raise FaultSpecError("a fault needs an 'error', 'lose_response', 'latency_ms' or 'hold_ms'")
    return Ec2Fault(fault_id, action, error, status, message, latency_ms, hold_ms, lose_response, times)


def error_xml(code: str, message: str) -> bytes:
    """EC2's error document (the Query API's ``Response/Errors/Error`` shape, with a request id)."""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{escape(code)}</Code>'
            f"<Message>{escape(message)}</Message></Error></Errors><RequestID>{uuid.uuid4()}</RequestID>"
            f"</Response>").encode()


def _error_message(code: str, params: dict[str, str], region: str) -> str:
    template = EC2_ERRORS.get(code, (0, "The request failed."))[1]
    zone = params.get("Placement.AvailabilityZone") or f"{region}a"
    others = ", ".join(f"{region}{letter}" for letter in "abcd" if f"{region}{letter}" != zone)
    return template.format(instance_type=params.get("InstanceType", "the requested"), zone=zone, other_zones=others)


@dataclass
class _Launch:
    fingerprint: tuple
    status: str
    headers: list[tuple[str, str]]
    body: bytes


class Ec2Hook:
    """The WSGI layer: faults, the call log and client tokens for EC2; everything else goes to ``app`` as is."""

    def __init__(self, app) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._faults: list[Ec2Fault] = []
        self._calls: deque[Ec2Call] = deque(maxlen=_MAX_CALLS)
        self._fault_ids = itertools.count(1)
        self._call_seq = itertools.count(1)
        self._launches: dict[tuple[str, str], _Launch] = {}
        self._token_locks: dict[tuple[str, str], threading.Lock] = {}

    # --- rules and log ---------------------------------------------------------------------------------------

    def add_fault(self, spec: Any) -> Ec2Fault:
        with self._lock:
            fault = parse_fault(spec, next(self._fault_ids))
            self._faults.append(fault)
            return fault

    def faults(self) -> list[Ec2Fault]:
        with self._lock:
            return [Ec2Fault(**asdict(fault)) for fault in self._faults]

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, action: str) -> Ec2Fault | None:
        if not self._faults:
            return None
        with self._lock:
            for fault in self._faults:
                if fault.matches(action):
                    fault.hits += 1
                    if fault.times is not None:
                        fault.times -= 1
                    return Ec2Fault(**asdict(fault))
        return None

    def calls(self, action: str | None = None, since: int = 0) -> list[Ec2Call]:
        with self._lock:
            calls = list(self._calls)
        return [c for c in calls if c.seq > since and (not action or fnmatch.fnmatchcase(c.action, action))]

    def _record(self, **values: Any) -> None:
        with self._lock:
            self._calls.append(Ec2Call(seq=next(self._call_seq), at=time.time(), **values))

    # --- WSGI ------------------------------------------------------------------------------------------------

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "").startswith(ADMIN_PREFIX + "/"):
            return self._admin(environ, start_response)
        scope = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        if scope is None or scope.group(2) != "ec2":
            return self.app(environ, start_response)
        region = scope.group(1)
        text = self._query_text(environ)
        found = _ACTION.search(text)
        if found is None:
            return self.app(environ, start_response)
        action = found.group(1)
        params = dict(parse_qsl(text, keep_blank_values=True)) if action == "RunInstances" else {}
        token = params.get("ClientToken") or None
        log = {"action": action, "region": region, "client_token": token}

        fault = self._take_fault(action)
        if fault is not None:
            log["fault"] = fault.id
            if fault.latency_ms:
                time.sleep(fault.latency_ms / 1000)
            if fault.error is not None:
                status = fault.status or EC2_ERRORS[fault.error][0]
                self._record(status=status, **log)
                body = error_xml(fault.error, fault.message or _error_message(fault.error, params, region))
                return _respond(start_response, status, body)

        if token is not None:
            status, headers, body, replayed = self._run_instances_once(environ, region, token, params)
        else:
            status, headers, body, replayed = *_call_app(self.app, environ), False
        self._record(status=int(status.split(" ", 1)[0]), replayed=replayed, **log)
        if fault is not None and fault.hold_ms:
            time.sleep(fault.hold_ms / 1000)
        if fault is not None and fault.lose_response:
            return _lose_response(environ, start_response)
        start_response(status, headers)
        return [body]

    def _query_text(self, environ) -> str:
        """The Query API's parameters: the form body (put back for moto to read) or the query string."""
        if environ.get("REQUEST_METHOD") == "POST" and environ.get("CONTENT_TYPE", "").startswith(_FORM):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            return body.decode("utf-8", "replace")
        return environ.get("QUERY_STRING", "")

    def _run_instances_once(self, environ, region: str, token: str, params: dict[str, str]):
        key = (region, token)
        fingerprint = tuple(sorted((name, value) for name, value in params.items() if name != "ClientToken"))
        with self._lock:
            token_lock = self._token_locks.setdefault(key, threading.Lock())
        with token_lock:  # a retry racing the original waits for its outcome
            known = self._launches.get(key)
            if known is not None:
                if known.fingerprint != fingerprint:
                    status = EC2_ERRORS["IdempotentParameterMismatch"][0]
                    body = error_xml("IdempotentParameterMismatch", EC2_ERRORS["IdempotentParameterMismatch"][1])
                    return _status_line(status), [("Content-Type", "text/xml;charset=UTF-8")], body, False
                return known.status, known.headers, known.body, True
            status, headers, body = _call_app(self.app, environ)
            if status.startswith("2"):
                self._launches[key] = _Launch(fingerprint, status, headers, body)
            return status, headers, body, False

    # --- admin API -------------------------------------------------------------------------------------------

    def _admin(self, environ, start_response):
        method, path = environ.get("REQUEST_METHOD", "GET"), environ["PATH_INFO"][len(ADMIN_PREFIX):]
        if path == "/faults" and method == "POST":
            try:
                spec = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)) or b"null")
                specs = spec if isinstance(spec, list) else [spec]
                added = [asdict(self.add_fault(item)) for item in specs]
            except (ValueError, FaultSpecError) as error:
                return _json(start_response, 400, {"error": str(error)})
            return _json(start_response, 201, added if isinstance(spec, list) else added[0])
        if path == "/faults" and method == "GET":
            return _json(start_response, 200, [asdict(fault) for fault in self.faults()])
        if path == "/faults" and method == "DELETE":
            self.clear_faults()
            return _respond(start_response, 204, b"")
        if path == "/calls" and method == "GET":
            query = {name: values[-1] for name, values in parse_qs(environ.get("QUERY_STRING", "")).items()}
            try:
                since = int(query.get("since", "0"))
            except ValueError:
                return _json(start_response, 400, {"error": "'since' must be an integer"})
            return _json(start_response, 200, [asdict(call) for call in self.calls(query.get("action"), since)])
        if path == "/calls" and method == "DELETE":
            with self._lock:
                self._calls.clear()
            return _respond(start_response, 204, b"")
        if path == "/health" and method == "GET":
            return _json(start_response, 200, {"status": "ok"})
        return _json(start_response, 404, {"error": f"no admin route {method} {ADMIN_PREFIX}{path}"})


def _call_app(app, environ) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run the wrapped app to completion: (status line, headers, body)."""
    started: dict[str, Any] = {}

    def start_response(status, headers, exc_info=None):
        started.update(status=status, headers=headers)
        return lambda data: None

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return started["status"], list(started["headers"]), body


def _status_line(status: int) -> str:
    from http import HTTPStatus

    return f"{status} {HTTPStatus(status).phrase}"


def _respond(start_response, status: int, body: bytes, content_type: str = "text/xml;charset=UTF-8"):
    headers = [("Content-Length", str(len(body)))] + ([("Content-Type", content_type)] if body else [])
    start_response(_status_line(status), headers)
    return [body]


def _json(start_response, status: int, value: Any):
    return _respond(start_response, status, json.dumps(value).encode(), "application/json")


def _lose_response(environ, start_response):
    """Close the client's connection without an answer (werkzeug's server exposes the socket)."""
    connection = environ.get("werkzeug.socket")
    if connection is not None:
        try:
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    start_response("502 Bad Gateway", [("Connection", "close"), ("Content-Length", "0")])
    return [b""]

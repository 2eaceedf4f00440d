"""Fault injection and a call log, shared by the Jira and Leostream sandboxes.

Both are driven over a small test-only HTTP API on the sandbox itself, so a test in another process can use it:

- ``POST /_sandbox/faults`` adds a rule ``{"method": "POST", "path": "/rest/api/2/issue/*/comment",
  "status": 429, "retry_after": 2, "latency_ms": 0, "drop": false, "times": 1, "for_s": null}``. ``path`` is
  an fnmatch pattern over the request path, ``method`` defaults to ``*``, ``times`` to 1 (``null``: every
  matching call), ``for_s`` (seconds from now the rule stays in force) to no end. A matching call first waits
  ``latency_ms``, then either drops the connection (``drop``), or answers ``status`` with the vendor's error
  body (and ``Retry-After``: the given seconds, or ``"window"``: the seconds left of the rule's ``for_s``, as a
  rate limiter answers until its window resets), or, with neither, goes on normally. ``expire_session`` (the
  Leostream sandbox only) expires the caller's API session, as its lifetime ending would, before the call is
  served: the call then meets the broker's own answer to an expired session.
- ``GET /_sandbox/faults`` lists the rules with their hit counts; ``DELETE /_sandbox/faults`` removes them all.
- ``POST /_sandbox/outage`` ``{"seconds": 120}`` takes the sandbox down (``sandbox.server.Listener``): its port
  refuses connections for that long, then it listens again with its state intact. Connections in flight are
  cut; the caller's own gets the 202 answer. SIGUSR1 to the sandbox's process ends an outage early.
- ``GET /_sandbox/calls?method=&path=&since=`` lists the calls served (``path`` is an fnmatch pattern, ``since``
  a sequence number); ``DELETE /_sandbox/calls`` empties the log.

The log keeps the method, path, query, status, the auth scheme (never the credentials) and the JSON body with
secret-looking fields masked.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request

ADMIN_PREFIX = "/_sandbox"
MASK = "**********"
_SECRET_WORDS = ("password", "secret", "token", "sid", "credential")
_MAX_CALLS = 5000

ErrorBody = Callable[[int, str], dict]
# Expires the API session of the request being served (a sandbox with sessions registers one).
SESSION_EXPIRER = "sandbox_expire_session"
MAX_OUTAGE_S = 3600


def redact(value: Any) -> Any:
    """A copy of a JSON value with every secret-looking field masked."""
    if isinstance(value, dict):
        return {key: MASK if _is_secret_key(key) and item not in (None, "") else redact(item)
                for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def _is_secret_key(key: str) -> bool:
    lowered = str(key).lower()
    return any(word in lowered for word in _SECRET_WORDS)


@dataclass
class Fault:
    id: int
    path: str
    method: str = "*"
    status: int | None = None
    retry_after: int | str | None = None
    latency_ms: int = 0
    drop: bool = False
    times: int | None = 1
    for_s: float | None = None
    expire_session: bool = False
    hits: int = 0
    until: float | None = None  # time.time() at which the rule lapses (from ``for_s``)

    def matches(self, method: str, path: str, now: float) -> bool:
        return ((self.method in ("*", method)) and fnmatch.fnmatchcase(path, self.path) and self.times != 0
                and (self.until is None or now < self.until))

    def retry_after_header(self, now: float) -> str | None:
        if self.retry_after == "window":
            return str(max(1, math.ceil((self.until or now) - now)))
        return None if self.retry_after is None else str(self.retry_after)


@dataclass
class Call:
    seq: int
    at: float
    method: str
    path: str
    query: dict[str, str]
    status: int
    auth: str | None
    body: Any = None
    fault: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


class FaultSpecError(ValueError):
    pass


def parse_fault(spec: Any, fault_id: int) -> Fault:
    if not isinstance(spec, dict):
        raise FaultSpecError("a fault is a JSON object")
    unknown = set(spec) - {"path", "method", "status", "retry_after", "latency_ms", "drop", "times", "for_s",
                           "expire_session"}
    if unknown:
        raise FaultSpecError(f"unknown fault fields: {', '.join(sorted(unknown))}")
    path = spec.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise FaultSpecError("'path' must be a path pattern starting with /")
    method = str(spec.get("method", "*")).upper()
    status = spec.get("status")
    if status is not None and (not isinstance(status, int) or not 400 <= status <= 599):
        raise FaultSpecError("'status' must be an HTTP error status (400-599)")
    for_s = spec.get("for_s")
    if for_s is not None and (isinstance(for_s, bool) or not isinstance(for_s, (int, float))
                              or not 0 < for_s <= 86400):
        raise FaultSpecError("'for_s' must be a number of seconds (at most a day) or null")
    retry_after = spec.get("retry_after")
    if retry_after == "window":
        if for_s is None:
            raise FaultSpecError("'retry_after': 'window' needs 'for_s'")
    elif retry_after is not None and (isinstance(retry_after, bool) or not isinstance(retry_after, int)
                                      or retry_after < 0):
        raise FaultSpecError("'retry_after' must be a number of seconds or 'window'")
    latency_ms = spec.get("latency_ms", 0)
    if not isinstance(latency_ms, int) or not 0 <= latency_ms <= 120_000:
        raise FaultSpecError("'latency_ms' must be between 0 and 120000")
    drop = spec.get("drop", False)
    if not isinstance(drop, bool):
        raise FaultSpecError("'drop' must be true or false")
    times = spec.get("times", 1)
    if times is not None and (not isinstance(times, int) or times < 1):
        raise FaultSpecError("'times' must be a positive count or null")
    expire_session = spec.get("expire_session", False)
    if not isinstance(expire_session, bool):
        raise FaultSpecError("'expire_session' must be true or false")
    if status is None and not drop and not latency_ms and not expire_session:
        raise FaultSpecError("a fault needs a 'status', 'drop', 'latency_ms' or 'expire_session'")
    return Fault(fault_id, path, method, status, retry_after, latency_ms, drop, times, for_s, expire_session,
                 until=None if for_s is None else time.time() + for_s)


class Traffic:
    """The fault rules and the call log of one sandbox (thread-safe)."""

    def __init__(self, sessions: bool = False) -> None:
        self.sessions = sessions
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._calls: deque[Call] = deque(maxlen=_MAX_CALLS)
        self._fault_ids = itertools.count(1)
        self._call_seq = itertools.count(1)

    def add_fault(self, spec: Any) -> Fault:
        with self._lock:
            fault = parse_fault(spec, next(self._fault_ids))
            if fault.expire_session and not self.sessions:
                raise FaultSpecError("'expire_session': this sandbox has no API sessions")
            self._faults.append(fault)
            return fault

    def faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first rule matching this call, with one use consumed."""
        now = time.time()
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path, now):
                    fault.hits += 1
                    if fault.times is not None:
                        fault.times -= 1
                    return Fault(**asdict(fault))
        return None

    def record(self, **values: Any) -> Call:
        with self._lock:
            call = Call(seq=next(self._call_seq), at=time.time(), **values)
            self._calls.append(call)
            return call

    def calls(self, method: str | None = None, path: str | None = None, since: int = 0) -> list[Call]:
        with self._lock:
            calls = list(self._calls)
        return [c for c in calls if c.seq > since and (not method or c.method == method.upper())
                and (not path or fnmatch.fnmatchcase(c.path, path))]

    def clear_calls(self) -> None:
        with self._lock:
            self._calls.clear()


def _drop_connection() -> None:
    """Close the client's TCP connection under the running request (werkzeug's server exposes the socket)."""
    connection = request.environ.get("werkzeug.socket")
    if connection is None:
        return
    try:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _auth_scheme() -> str | None:
    header = request.headers.get("Authorization", "")
    return header.split(" ", 1)[0] or None if header else None


def _logged_headers() -> dict[str, str]:
    wanted = ("Content-Type", "Accept", "User-Agent", "X-Atlassian-Token", "X-Force-Accept-Language")
    return {name: request.headers[name] for name in wanted if name in request.headers}


def install(app: Flask, error_body: ErrorBody, extra_admin: Blueprint | None = None,
            expire_session: Callable[[], None] | None = None) -> Traffic:
    """Attach fault injection, the call log and the ``/_sandbox`` admin API to a sandbox app;
    ``expire_session()`` (a sandbox with API sessions) expires the session of the request being served."""
    traffic = Traffic(sessions=expire_session is not None)
    if expire_session is not None:
        app.extensions[SESSION_EXPIRER] = expire_session
    app.extensions["sandbox_traffic"] = traffic

    @app.before_request
    def _inject_fault():
        g.sandbox_fault = None
        if request.path.startswith(ADMIN_PREFIX):
            return None
        fault = traffic.take_fault(request.method, request.path)
        if fault is None:
            return None
        g.sandbox_fault = fault.id
        if fault.latency_ms:
            time.sleep(fault.latency_ms / 1000)
        if fault.expire_session:
            current_app.extensions[SESSION_EXPIRER]()
        if fault.drop:
            _drop_connection()
            response = Response(b"", status=502)
            response.headers["Connection"] = "close"
            return response
        if fault.status is not None:
            response = jsonify(error_body(fault.status, _fault_message(fault.status)))
            response.status_code = fault.status
            if (retry_after := fault.retry_after_header(time.time())) is not None:
                response.headers["Retry-After"] = retry_after
            return response
        return None

    @app.after_request
    def _log_call(response: Response) -> Response:
        if request.path.startswith(ADMIN_PREFIX):
            return response
        body = request.get_json(silent=True) if request.is_json else None
        if body is None and request.form:
            body = request.form.to_dict()
        traffic.record(
            method=request.method, path=request.path, query=request.args.to_dict(), status=response.status_code,
            auth=_auth_scheme(), body=redact(body), fault=getattr(g, "sandbox_fault", None),
            headers=_logged_headers(),
        )
        return response

    admin = Blueprint("sandbox_admin", __name__, url_prefix=ADMIN_PREFIX)

    @admin.post("/faults")
    def add_fault():
        spec = request.get_json(silent=True)
        specs = spec if isinstance(spec, list) else [spec]
        try:
            added = [traffic.add_fault(item) for item in specs]
        except FaultSpecError as error:
            return jsonify({"error": str(error)}), 400
        return jsonify([asdict(f) for f in added] if isinstance(spec, list) else asdict(added[0])), 201

    @admin.get("/faults")
    def list_faults():
        return jsonify([asdict(f) for f in traffic.faults()])

    @admin.delete("/faults")
    def clear_faults():
        traffic.clear_faults()
        return "", 204

    @admin.post("/outage")
    def outage():
        listener = current_app.extensions.get("sandbox_listener")
        if listener is None:
            return jsonify({"error": "this server cannot go down (it is not served by sandbox.server.Listener)"}), 409
        seconds = (request.get_json(silent=True) or {}).get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= MAX_OUTAGE_S:
            return jsonify({"error": f"'seconds' must be a number of seconds up to {MAX_OUTAGE_S}"}), 400
        listener.outage(float(seconds), keep=request.environ.get("werkzeug.socket"))
        return jsonify({"down_for_s": seconds}), 202

    @admin.get("/calls")
    def list_calls():
        try:
            since = int(request.args.get("since", "0"))
        except ValueError:
            return jsonify({"error": "'since' must be an integer"}), 400
        calls = traffic.calls(request.args.get("method"), request.args.get("path"), since)
        return jsonify([asdict(c) for c in calls])

    @admin.delete("/calls")
    def clear_calls():
        traffic.clear_calls()
        return "", 204

    app.register_blueprint(admin)
    if extra_admin is not None:
        app.register_blueprint(extra_admin, url_prefix=ADMIN_PREFIX)
    return traffic


def _fault_message(status: int) -> str:
    if status == 429:
        return "Rate limit exceeded."
    if status == 503:
        return "Service unavailable"
    if status >= 500:
        return "Internal server error"
    return "Request refused"

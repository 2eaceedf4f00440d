"""A stand-in for the Airflow REST endpoints the webhook bridge and its relay call (``POST /auth/token``,
``POST /api/v2/dags/{dag_id}/dagRuns`` and the health endpoint), over real HTTP. A fixture of ``bench.bridge_ack``
and of the bridge's tests (tests/webhook_bridge), where a real Airflow would measure or test Airflow; end-to-end
tests use the real one."""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def jwt(exp: float) -> str:
    """An unsigned JWT-shaped token whose ``exp`` claim the client reads."""
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{part({'alg': 'HS512'})}.{part({'sub': 'vdi', 'exp': int(exp), 'n': time.monotonic_ns()})}.sig"


class AirflowStub:
    """Tokens for ``username``/``password``; triggers answer 200 (or 409 for a known run id) after ``delay_s``,
    or ``trigger_status`` when set. ``runs`` holds each accepted trigger's body. While ``gate`` is clear, a
    trigger that has arrived (counted in ``triggers_received``) is held unanswered, for ``hold_limit_s`` at
    most, so that a test of a caller that wrongly waits fails instead of hanging."""

    def __init__(self, username: str = "vdi", password: str = "pw", *, delay_s: float = 0.0):
        self.username, self.password = username, password
        self.delay_s = delay_s
        self.token_lifetime_s = 3600
        self.valid_tokens: set[str] = set()
        self.token_requests = 0
        self.runs: dict[str, dict] = {}
        self.trigger_status: int | None = None
        self.triggers_received = 0
        self.gate = threading.Event()
        self.gate.set()
        self.hold_limit_s = 10.0
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else Nagle + delayed ACK add 40 ms to each answer

            def log_message(self, *args):
                pass

            def _answer(self, status: int, payload: dict):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._answer(200, {"metadatabase": {"status": "healthy"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path == "/auth/token":
                    return self._answer(*stub.token(body))
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if token not in stub.valid_tokens:
                    return self._answer(401, {"detail": "Not authenticated"})
                with stub._lock:
                    stub.triggers_received += 1
                stub.gate.wait(stub.hold_limit_s)
                time.sleep(stub.delay_s)  # the stand-in's trigger latency, not synchronisation
                self._answer(*stub.trigger(self.path, body))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def token(self, body: dict) -> tuple[int, dict]:
        with self._lock:
            self.token_requests += 1
            if body != {"username": self.username, "password": self.password}:
                return 401, {"detail": "Invalid credentials"}
            token = jwt(time.time() + self.token_lifetime_s)
            self.valid_tokens.add(token)
            return 201, {"access_token": token}

    def trigger(self, path: str, body: dict) -> tuple[int, dict]:
        with self._lock:
            if self.trigger_status:
                return self.trigger_status, {"detail": "configured failure"}
            if "logical_date" not in body or body["logical_date"] is not None:
                return 422, {"detail": "logical_date must be given, and null"}
            if body.get("dag_run_id") in self.runs:
                return 409, {"detail": "Unique constraint violation"}
            self.runs[body["dag_run_id"]] = {"path": path, **body}
            return 200, {"dag_run_id": body["dag_run_id"], "state": "queued"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

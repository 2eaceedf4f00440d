"""Webhook delivery as Jira Cloud does it for admin webhooks.

Each delivery is POSTed from its own thread (Jira gives no ordering), signed with
``X-Hub-Signature: sha256=<HMAC-SHA256(secret, exact body bytes)>`` when the webhook has a secret, and carries
``X-Atlassian-Webhook-Identifier`` (the same on every retry), ``X-Atlassian-Webhook-Flow: Primary`` and, on retries
only, ``X-Atlassian-Webhook-Retry: <n>``.

Retries follow Jira Cloud: only 408, 409, 425, 429, 5xx, connection failures and timeouts are retried, up to 5 times,
each 5-15 minutes after the previous attempt; once a webhook has failed continuously for 30 minutes it gets a single
attempt per delivery until one succeeds. ``delay_scale`` multiplies every one of those durations (1.0 = real time).
Any 2xx counts as delivered; other statuses are failures that are never resent.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests

log = logging.getLogger(__name__)

RETRIED_STATUSES = frozenset({408, 409, 425, 429})
MAX_RETRIES = 5
RETRY_DELAY_RANGE_S = (5 * 60, 15 * 60)
DEGRADED_AFTER_S = 30 * 60
USER_AGENT = "Atlassian Webhook HTTP Client"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def is_retried(status: int | None) -> bool:
    """None stands for a connection failure or a timeout."""
    return status is None or status in RETRIED_STATUSES or 500 <= status <= 599


@dataclass
class Attempt:
    retry: int
    at: float
    status: int | None
    error: str | None


@dataclass
class Delivery:
    identifier: str
    webhook_id: int
    event: str
    issue_key: str | None
    url: str
    state: str = "pending"  # pending | delivered | failed
    attempts: list[Attempt] = field(default_factory=list)
    seq: int = 0

    def as_json(self) -> dict:
        return {"identifier": self.identifier, "webhookId": self.webhook_id, "event": self.event,
                "issueKey": self.issue_key, "url": self.url, "state": self.state, "seq": self.seq,
                "attempts": [a.__dict__ for a in self.attempts]}


class Dispatcher:
    def __init__(self, delay_scale: float = 1.0, timeout_s: float = 20.0, rng: random.Random | None = None):
        self.delay_scale = delay_scale
        self.timeout_s = timeout_s
        self.rng = rng or random.Random()
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        self._failing_since: dict[int, float] = {}
        self._seq = itertools.count(1)
        self._stopped = threading.Event()
        self._session = requests.Session()

    def deliver(self, webhook: dict, event: str, payload: dict, issue_key: str | None) -> Delivery:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        delivery = Delivery(str(uuid.uuid4()), webhook["id"], event, issue_key, webhook["url"],
                            seq=next(self._seq))
        with self._lock:
            self._deliveries.append(delivery)
        headers = {
            "Content-Type": "application/json; charset=UTF-8",
            "User-Agent": USER_AGENT,
            "X-Atlassian-Webhook-Identifier": delivery.identifier,
            "X-Atlassian-Webhook-Flow": "Primary",
        }
        if webhook.get("excludeBody"):
            body = b""
        if webhook.get("secret"):
            headers["X-Hub-Signature"] = signature(webhook["secret"], body)
        thread = threading.Thread(target=self._run, args=(delivery, webhook["url"], headers, body),
                                  name=f"jira-webhook-{delivery.seq}", daemon=True)
        thread.start()
        return delivery

    def _run(self, delivery: Delivery, url: str, headers: dict[str, str], body: bytes) -> None:
        retries_allowed = 0 if self._degraded(delivery.webhook_id) else MAX_RETRIES
        retry = 0
        while not self._stopped.is_set():
            attempt_headers = dict(headers)
            if retry:
                attempt_headers["X-Atlassian-Webhook-Retry"] = str(retry)
            status, error = self._post(url, attempt_headers, body)
            succeeded = status is not None and 200 <= status <= 299
            with self._lock:
                delivery.attempts.append(Attempt(retry, time.time(), status, error))
                if succeeded:
                    self._failing_since.pop(delivery.webhook_id, None)
                else:
                    self._failing_since.setdefault(delivery.webhook_id, time.monotonic())
            if succeeded:
                self._mark(delivery, "delivered")
                return
            if not is_retried(status) or retry >= retries_allowed:
                self._mark(delivery, "failed")
                return
            retry += 1
            low, high = RETRY_DELAY_RANGE_S
            if self._stopped.wait(self.rng.uniform(low, high) * self.delay_scale):
                return

    def _post(self, url: str, headers: dict[str, str], body: bytes) -> tuple[int | None, str | None]:
        try:
            response = self._session.post(url, data=body, headers=headers, timeout=self.timeout_s,
                                          allow_redirects=False)
            response.close()
            return response.status_code, None
        except requests.Timeout:
            return None, "timeout"
        except requests.RequestException as error:
            return None, f"connection failed: {type(error).__name__}"

    def _degraded(self, webhook_id: int) -> bool:
        with self._lock:
            since = self._failing_since.get(webhook_id)
        return since is not None and time.monotonic() - since >= DEGRADED_AFTER_S * self.delay_scale

    def _mark(self, delivery: Delivery, state: str) -> None:
        with self._lock:
            delivery.state = state
        if state == "failed":
            last = delivery.attempts[-1]
            log.warning("webhook %s delivery %s failed after %d attempt(s): %s", delivery.webhook_id,
                        delivery.identifier, len(delivery.attempts), last.error or last.status)

    def deliveries(self, since: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [d.as_json() for d in self._deliveries if d.seq > since]

    def clear(self) -> None:
        with self._lock:
            self._deliveries.clear()
            self._failing_since.clear()

    def stop(self) -> None:
        self._stopped.set()

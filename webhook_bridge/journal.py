"""The log lines and Prometheus samples of answered deliveries, written off the request path.

A request appends one entry to a deque (atomic under the GIL: no lock, no wake-up); a journal thread turns the
entries into the log lines and the samples every ``interval_s``. The work is the same, but done by one thread:
request threads that each take the logging handler's lock (and release the GIL in its write) and
prometheus_client's value lock pay more CPU per line and per sample than a single thread does
(``bench.journal_contention``). Under gevent workers there is no such contention, and the journal only takes the
writes out of the time to answer. A line reaches the log at most ``interval_s`` late; ``flush`` writes everything
queued (``/metrics`` calls it first, and ``stop`` at exit).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque

from webhook_bridge.metrics import BridgeMetrics

delivery_log = logging.getLogger("webhook_bridge.delivery")


class DeliveryJournal:
    def __init__(self, metrics: BridgeMetrics, interval_s: float = 0.25):
        self._metrics = metrics
        self._interval_s = interval_s
        self._entries: deque[tuple] = deque()
        self._flushing = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bridge-journal", daemon=True)
        self._thread.start()

    def answered(self, outcome: str, ack_seconds: float, line: dict) -> None:
        """One answered delivery: its outcome, how long the answer took, and its log line's fields."""
        self._entries.append((outcome, ack_seconds, line))

    def flush(self) -> None:
        """Write every entry queued so far (in order)."""
        with self._flushing:
            while self._entries:
                self._write_answered(*self._entries.popleft())

    def _write_answered(self, outcome: str, ack_seconds: float, line: dict) -> None:
        self._metrics.delivery(outcome)
        self._metrics.ack_seconds.observe(ack_seconds)
        delivery_log.info(json.dumps(line))

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self.flush()

    def _run(self) -> None:
        while not self._stopping.wait(self._interval_s):
            try:
                self.flush()
            except Exception:  # a broken log handler must not stop the counting
                logging.getLogger("webhook_bridge").exception("journal: could not write entries")

"""Prometheus metrics of the bridge.

Counters and the histogram live in a registry per app. Under gunicorn with several workers the config sets
``PROMETHEUS_MULTIPROC_DIR`` (before prometheus_client is imported), and ``/metrics`` aggregates every
worker's files. The backlog gauges are read from PostgreSQL at scrape time, so they are the same whichever
worker answers.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class BridgeMetrics:
    def __init__(self, backlog: Callable[[], tuple[int, float] | None]):
        self.registry = CollectorRegistry()
        self.deliveries = Counter("vdi_bridge_deliveries", "Jira deliveries answered, by outcome",
                                  ["outcome"], registry=self.registry)
        self.ack_seconds = Histogram("vdi_bridge_ack_seconds", "Time from request to answer on /webhooks/jira",
                                     buckets=ACK_BUCKETS, registry=self.registry)
        self.triggers = Counter("vdi_bridge_triggers", "Airflow trigger attempts by the dispatcher, by outcome",
                                ["outcome"], registry=self.registry)
        self._backlog = backlog
        self._delivery_counters: dict[str, object] = {}

    def delivery(self, outcome: str) -> None:
        """Count one answered delivery (the labelled child is looked up once per outcome)."""
        counter = self._delivery_counters.get(outcome)
        if counter is None:
            counter = self._delivery_counters[outcome] = self.deliveries.labels(outcome)
        counter.inc()

    def _backlog_families(self):
        reading = self._backlog()
        if reading is None:
            return []
        pending, oldest_age = reading
        return [
            GaugeMetricFamily("vdi_bridge_pending_deliveries", "Deliveries recorded but not yet dispatched",
                              value=pending),
            GaugeMetricFamily("vdi_bridge_oldest_pending_age_seconds", "Age of the oldest pending delivery",
                              value=oldest_age),
        ]

    def exposition(self) -> bytes:
        """The Prometheus text of this process (or of every gunicorn worker) plus the backlog gauges."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
        else:
            registry = self.registry
        text = generate_latest(registry)
        families = self._backlog_families()
        if families:
            backlog_registry = CollectorRegistry()
            backlog_registry.register(_Static(families))
            text += generate_latest(backlog_registry)
        return text


class _Static:
    def __init__(self, families):
        self._families = families

    def collect(self):
        return self._families

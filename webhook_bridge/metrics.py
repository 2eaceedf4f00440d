"""Prometheus metrics of the bridge.

Counters and the histogram live in a registry per app. Under gunicorn with several workers the config sets
``PROMETHEUS_MULTIPROC_DIR`` (before prometheus_client is imported), and ``/metrics`` aggregates every
worker's files. The backlog and the relay's figures are read from PostgreSQL at scrape time (the relay runs in
a process of its own and writes them there), so they are the same whichever worker answers.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from vdi.store.deliveries import Backlog, RelayReport

ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True)
class DatabaseReading:
    backlog: Backlog
    relay: RelayReport


class BridgeMetrics:
    def __init__(self, read_database: Callable[[], DatabaseReading | None]):
        self.registry = CollectorRegistry()
        self.deliveries = Counter("vdi_bridge_deliveries", "Jira deliveries answered, by outcome",
                                  ["outcome"], registry=self.registry)
        self.ack_seconds = Histogram("vdi_bridge_ack_seconds", "Time from request to answer on /webhooks/jira",
                                     buckets=ACK_BUCKETS, registry=self.registry)
        self._read_database = read_database
        self._delivery_counters: dict[str, object] = {}

    def delivery(self, outcome: str) -> None:
        """Count one answered delivery (the labelled child is looked up once per outcome)."""
        counter = self._delivery_counters.get(outcome)
        if counter is None:
            counter = self._delivery_counters[outcome] = self.deliveries.labels(outcome)
        counter.inc()

    def _database_families(self):
        reading = self._read_database()
        if reading is None:
            return []
        triggers = CounterMetricFamily("vdi_bridge_triggers", "Airflow trigger attempts by the relay, by outcome",
                                       labels=["outcome"])
        for outcome, attempts in reading.relay.trigger_attempts.items():
            triggers.add_metric([outcome], attempts)
        by_status = GaugeMetricFamily("vdi_bridge_deliveries_by_status",
                                      "Deliveries not dispatched, by status (dead_lettered: given up for good)",
                                      labels=["status"])
        for status, count in (("pending", reading.backlog.pending), ("failed", reading.backlog.failed),
                              ("dead_lettered", reading.backlog.dead_lettered)):
            by_status.add_metric([status], count)
        families = [
            GaugeMetricFamily("vdi_bridge_pending_deliveries", "Deliveries recorded but not yet dispatched",
                              value=reading.backlog.pending),
            by_status,
            GaugeMetricFamily("vdi_bridge_oldest_pending_age_seconds", "Age of the oldest pending delivery",
                              value=reading.backlog.oldest_pending_age_s),
            triggers,
        ]
        if reading.relay.last_beat_age_s is not None:
            families.append(GaugeMetricFamily("vdi_bridge_relay_last_beat_age_seconds",
                                              "Time since a relay last wrote its beat",
                                              value=reading.relay.last_beat_age_s))
        return families

    def exposition(self) -> bytes:
        """The Prometheus text of this process (or of every gunicorn worker) plus the figures read from the database."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
        else:
            registry = self.registry
        text = generate_latest(registry)
        families = self._database_families()
        if families:
            database_registry = CollectorRegistry()
            database_registry.register(_Static(families))
            text += generate_latest(database_registry)
        return text


class _Static:
    def __init__(self, families):
        self._families = families

    def collect(self):
        return self._families

"""webhook_bridge.journal: log lines and samples written by one thread, in order, none lost at stop."""

import json
import logging

import pytest
from prometheus_client import generate_latest

from tests.conftest import wait_until
from webhook_bridge.journal import DeliveryJournal
from webhook_bridge.metrics import BridgeMetrics


@pytest.fixture
def metrics():
    return BridgeMetrics(lambda: None)


def sample(metrics: BridgeMetrics, name: str) -> str:
    return [line for line in generate_latest(metrics.registry).decode().splitlines() if line.startswith(name)][0]


def test_entries_are_written_by_the_journal_thread_in_order(metrics, caplog):
    journal = DeliveryJournal(metrics, interval_s=0.05)
    try:
        with caplog.at_level(logging.INFO, logger="webhook_bridge"):
            journal.answered("accepted", 0.002, {"delivery_id": "a", "outcome": "accepted"})
            journal.answered("duplicate", 0.001, {"delivery_id": "a", "outcome": "duplicate"})
            wait_until(lambda: len(caplog.records) == 2, timeout_s=5, message="two journal lines")
    finally:
        journal.stop()
    assert [json.loads(record.getMessage()) for record in caplog.records] == [
        {"delivery_id": "a", "outcome": "accepted"}, {"delivery_id": "a", "outcome": "duplicate"}]
    assert sample(metrics, 'vdi_bridge_deliveries_total{outcome="accepted"}').endswith(" 1.0")
    assert sample(metrics, "vdi_bridge_ack_seconds_count").endswith(" 2.0")


def test_stop_writes_what_is_still_queued(metrics, caplog):
    journal = DeliveryJournal(metrics, interval_s=3600)
    with caplog.at_level(logging.INFO, logger="webhook_bridge"):
        for n in range(50):
            journal.answered("accepted", 0.001, {"delivery_id": f"d{n}"})
        assert caplog.records == []  # nothing is written on the request path
        journal.stop()
    assert [json.loads(record.getMessage())["delivery_id"] for record in caplog.records] == [f"d{n}" for n in range(50)]


def test_a_failing_log_handler_does_not_stop_the_journal(metrics, caplog):
    caplog.set_level(logging.INFO, logger="webhook_bridge")
    class Broken(logging.Handler):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def emit(self, record):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("disk full")

        def handleError(self, record):  # logging's default prints; let the error reach the journal
            raise

    broken = Broken()
    logger = logging.getLogger("webhook_bridge.delivery")
    logger.addHandler(broken)
    journal = DeliveryJournal(metrics, interval_s=0.05)
    try:
        journal.answered("accepted", 0.001, {"delivery_id": "first"})
        wait_until(lambda: broken.calls == 1, timeout_s=5, message="the first write")
        journal.answered("accepted", 0.001, {"delivery_id": "second"})
        wait_until(lambda: broken.calls == 2, timeout_s=5, message="the journal still writing after an error")
    finally:
        journal.stop()
        logger.removeHandler(broken)

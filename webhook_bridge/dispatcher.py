"""Triggers recorded deliveries in Airflow, after Jira has had its answer.

Each bridge process runs a few dispatcher threads. A new delivery wakes one at once (``wake``); every thread
also sweeps the table every few seconds (jittered) for anything still pending and due, which covers
deliveries whose wake-up was lost (a restart, another process) and retries of Airflow refusals.
A delivery is claimed with ``FOR UPDATE SKIP LOCKED`` and its row stays locked while Airflow is called, so
several bridge processes never trigger the same delivery at once; ``dag_run_id`` is derived from the delivery,
so even a trigger whose answer was lost only gets a 409 ("already triggered") next time.

When deliveries arrive faster than Airflow takes them, a thread takes every wake-up queued (up to
``_MAX_BATCH``) and handles them in one transaction: one claim, the triggers one after the other, one UPDATE
for those Airflow took, one commit. Alone, a delivery is a batch of one.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from vdi.store import deliveries
from webhook_bridge.airflow_client import AirflowClient, AirflowUnavailable, TriggerOutcome, TriggerRefused
from webhook_bridge.journal import DeliveryJournal

log = logging.getLogger("webhook_bridge.dispatch")

# Deliveries claimed together: their rows stay locked until the last trigger of the batch is answered.
_MAX_BATCH = 8


def retry_delay(attempts: int, base_s: float, max_s: float) -> float:
    """Exponential backoff with jitter: a random delay in [½, 1] × min(max, base × 2^attempts)."""
    ceiling = min(max_s, base_s * 2 ** min(attempts, 30))
    return ceiling * random.uniform(0.5, 1.0)


def run_conf(claimed: deliveries.ClaimedDelivery) -> dict:
    return {"delivery_id": claimed.delivery_id, "issue_key": claimed.issue_key, "event": claimed.event}


class Dispatcher:
    def __init__(self, pool: ConnectionPool, airflow: AirflowClient, journal: DeliveryJournal, *, threads: int,
                 sweep_interval_s: float, retry_base_s: float, retry_max_s: float):
        self._pool = pool
        self._airflow = airflow
        self._journal = journal
        self._thread_count = threads
        self._sweep_interval_s = sweep_interval_s
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self._wakeups: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for number in range(self._thread_count):
            thread = threading.Thread(target=self._run, name=f"bridge-dispatcher-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = 10) -> None:
        self._stopping.set()
        for _ in self._threads:
            self._wakeups.put(None)
        for thread in self._threads:
            thread.join(timeout_s)

    def wake(self, delivery_id: str) -> None:
        """Dispatch this (just committed) delivery as soon as a dispatcher thread is free."""
        if self._threads:
            self._wakeups.put(delivery_id)

    def _next_sweep_in(self) -> float:
        return self._sweep_interval_s * random.uniform(0.8, 1.2)

    def _next_wakeups(self, first: str) -> list[str]:
        """``first`` and the wake-ups queued behind it, up to ``_MAX_BATCH``."""
        batch = [first]
        while len(batch) < _MAX_BATCH:
            try:
                delivery_id = self._wakeups.get_nowait()
            except queue.Empty:
                break
            if delivery_id is None:  # stop(): leave the sentinel for this thread's next get
                self._wakeups.put(None)
                break
            batch.append(delivery_id)
        return batch

    def _run(self) -> None:
        next_sweep = time.monotonic() + self._next_sweep_in() * random.random()
        while not self._stopping.is_set():
            try:
                delivery_id = self._wakeups.get(timeout=max(0.0, next_sweep - time.monotonic()))
            except queue.Empty:
                delivery_id = None
            if self._stopping.is_set():
                return
            try:
                if delivery_id is not None:
                    self.dispatch(self._next_wakeups(delivery_id))
                if time.monotonic() >= next_sweep:
                    self.sweep()
                    next_sweep = time.monotonic() + self._next_sweep_in()
            except (psycopg.Error, PoolTimeout) as error:
                # Database trouble: the rows stay pending; the next sweep tries again.
                log.warning("dispatcher: database unavailable (%s)", type(error).__name__)
                next_sweep = time.monotonic() + self._next_sweep_in()
            except Exception:
                log.exception("dispatcher: unexpected error")
                next_sweep = time.monotonic() + self._next_sweep_in()

    def sweep(self, limit: int = 1000) -> int:
        """Dispatch due pending deliveries until none is left, Airflow is unavailable, or ``limit`` is reached."""
        done = 0
        while done < limit and not self._stopping.is_set():
            outcomes = self.dispatch(None, min(_MAX_BATCH, limit - done))
            if not outcomes:
                break
            done += len(outcomes)
            if outcomes[-1] == "retry":
                break  # Airflow is unavailable: leave the rest for their own retry time.
        return done

    def dispatch(self, delivery_ids: list[str] | None, limit: int = _MAX_BATCH) -> list[str]:
        """Claim these deliveries (or up to ``limit`` of the most overdue) and trigger them; their outcomes.

        The first "Airflow unavailable" ends the batch: that delivery is rescheduled with backoff, the rest of
        the batch is left as it was (still pending and due) for the next sweep.
        """
        outcomes: list[str] = []
        lines: list[tuple] = []
        with self._pool.connection() as conn, conn.transaction():
            claimed_all = deliveries.claim_many(conn, delivery_ids, limit)
            dispatched: list[str] = []
            for claimed in claimed_all:
                if self._stopping.is_set():
                    break
                started = time.monotonic()
                try:
                    result = self._airflow.trigger(claimed.dag_id, claimed.dag_run_id, run_conf(claimed))
                except AirflowUnavailable as error:
                    delay = retry_delay(claimed.attempts, self._retry_base_s, self._retry_max_s)
                    deliveries.mark_retry(conn, claimed.delivery_id, str(error), delay)
                    outcome, detail = "retry", f"{error}; next attempt in {delay:.1f}s"
                except TriggerRefused as error:
                    deliveries.mark_failed(conn, claimed.delivery_id, str(error))
                    outcome, detail = "refused", str(error)
                else:
                    dispatched.append(claimed.delivery_id)
                    outcome = "created" if result is TriggerOutcome.CREATED else "already_triggered"
                    detail = None
                outcomes.append(outcome)
                lines.append((claimed, outcome, (time.monotonic() - started) * 1000, detail))
                if outcome == "retry":
                    break
            deliveries.mark_dispatched_many(conn, dispatched)
        for claimed, outcome, ms, detail in lines:
            error = f" error={detail}" if detail else ""
            self._journal.triggered(outcome, (
                f"trigger delivery={claimed.delivery_id} dag={claimed.dag_id} run={claimed.dag_run_id} "
                f"outcome={outcome} attempt={claimed.attempts + 1} ms={ms:.0f}{error}"))
        return outcomes

"""The relay: triggers recorded deliveries in Airflow, in a process of its own (``python -m webhook_bridge.relay``).

The bridge's gunicorn workers record deliveries and answer Jira; everything that waits on Airflow happens here,
so an ack never shares a process (or its GIL) with relay work. Same settings as the bridge (``settings``), its own
database pool and Airflow client.

Recording a pending delivery notifies ``deliveries.NEW_DELIVERY_CHANNEL`` when it commits; the relay LISTENs, and
its threads then trigger every due delivery. They also look every few seconds (jittered) without being notified,
which covers a lost notification (the relay restarting, its connection breaking) and the retries of what Airflow
refused. A delivery is claimed with ``FOR UPDATE SKIP LOCKED`` and its row stays locked while Airflow is called,
so several relays never trigger the same delivery at once; ``dag_run_id`` is derived from the delivery, so even a
trigger whose answer was lost only gets a 409 ("already triggered") next time. Each claim takes up to
``_MAX_BATCH`` deliveries: the triggers one after the other, one UPDATE for those Airflow took, one commit.

A delivery whose route's DAG does not exist (Airflow's 404 naming it) is retried while this relay has seen that
DAG missing for less than ``MISSING_DAG_GRACE_S`` (a DAG just deployed may not be parsed yet); after that it is
dead-lettered (status ``dead_lettered``, final) with one warning line, instead of being retried forever.

The listening thread also writes the relay's beat and its trigger counts every
``deliveries.RELAY_BEAT_INTERVAL_S``: the bridge's ``/readyz`` and ``/metrics`` read them.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from vdi.store import deliveries
from vdi.store.db import DatabaseNotConfigured, database_url
from webhook_bridge import settings
from webhook_bridge.airflow_client import (AirflowClient, AirflowUnavailable, DagNotFound, TriggerOutcome,
                                           TriggerRefused)

log = logging.getLogger("webhook_bridge.relay")

# What the relay's connections are called in pg_stat_activity.
APPLICATION_NAME = "webhook-relay"
# Deliveries claimed together: their rows stay locked until the last trigger of the batch is answered.
_MAX_BATCH = 8
# How long the listening thread waits before connecting again after its connection broke.
_RECONNECT_S = 1.0


def retry_delay(attempts: int, base_s: float, max_s: float) -> float:
    """Exponential backoff with jitter: a random delay in [½, 1] × min(max, base × 2^attempts)."""
    ceiling = min(max_s, base_s * 2 ** min(attempts, 30))
    return ceiling * random.uniform(0.5, 1.0)


def run_conf(claimed: deliveries.ClaimedDelivery) -> dict:
    return {"delivery_id": claimed.delivery_id, "issue_key": claimed.issue_key, "event": claimed.event}


class Relay:
    """``threads`` trigger threads and one listening thread; ``start``, then ``stop`` (which closes the pool)."""

    def __init__(self, pool: ConnectionPool, connect: Callable[[], psycopg.Connection], airflow: AirflowClient, *,
                 threads: int, sweep_interval_s: float, retry_base_s: float, retry_max_s: float,
                 missing_dag_grace_s: float = 900.0):
        """``connect`` opens the autocommit connection the relay listens and beats on."""
        self.pool = pool
        self._connect = connect
        self._airflow = airflow
        self._thread_count = threads
        self._sweep_interval_s = sweep_interval_s
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self._missing_dag_grace_s = missing_dag_grace_s
        # DAG id -> when (monotonic) this relay first found it missing; forgotten once a trigger of it succeeds.
        self._missing_since: dict[str, float] = {}
        self.relay_id = f"{socket.gethostname()}:{os.getpid()}"
        self._due = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._attempts: Counter[str] = Counter()  # trigger attempts not yet written by a beat, by outcome
        self._attempts_lock = threading.Lock()

    def start(self) -> None:
        targets = [(self._listen, "relay-listen")]
        targets += [(self._trigger_loop, f"relay-trigger-{number}") for number in range(self._thread_count)]
        for target, name in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = 10) -> None:
        """Stop the threads (a trigger in flight is answered first), write the last counts, close the pool."""
        self._stopping.set()
        self._due.set()
        for thread in self._threads:
            thread.join(timeout_s)
        try:
            with self._connect() as conn:
                self._beat(conn, alive=False)
        except psycopg.Error as error:
            log.warning("relay: could not write the last trigger counts (%s)", type(error).__name__)
        self.pool.close()

    def _trigger_loop(self) -> None:
        while not self._stopping.is_set():
            self._due.wait(self._sweep_interval_s * random.uniform(0.8, 1.2))
            self._due.clear()
            if self._stopping.is_set():
                return
            try:
                self.drain()
            except (psycopg.Error, PoolTimeout) as error:
                # Database trouble: the rows stay pending; the next look tries again.
                log.warning("relay: database unavailable (%s)", type(error).__name__)
            except Exception:
                log.exception("relay: unexpected error")

    def _listen(self) -> None:
        conn: psycopg.Connection | None = None
        next_beat = 0.0
        while not self._stopping.is_set():
            try:
                if conn is None:
                    conn = self._connect()
                    deliveries.listen(conn)
                    self._due.set()  # what was recorded while nobody listened
                if time.monotonic() >= next_beat:
                    self._beat(conn)
                    next_beat = time.monotonic() + deliveries.RELAY_BEAT_INTERVAL_S
                for _ in conn.notifies(timeout=min(1.0, max(0.0, next_beat - time.monotonic()))):
                    self._due.set()
            except Exception as error:  # the listening thread must outlive anything: it is the relay's beat
                if isinstance(error, psycopg.Error):
                    log.warning("relay: listening connection lost (%s); connecting again", type(error).__name__)
                else:
                    log.exception("relay: unexpected error while listening; connecting again")
                if conn is not None:
                    conn.close()
                    conn = None
                self._stopping.wait(_RECONNECT_S)
        if conn is not None:
            conn.close()

    def _beat(self, conn: psycopg.Connection, alive: bool = True) -> None:
        with self._attempts_lock:
            attempts, self._attempts = self._attempts, Counter()
        try:
            deliveries.relay_beat(conn, self.relay_id, attempts, alive=alive)
        except BaseException:
            with self._attempts_lock:
                self._attempts.update(attempts)
            raise

    def drain(self) -> int:
        """Trigger due deliveries until none is left, Airflow is unavailable or the relay stops; how many tried."""
        tried = 0
        while not self._stopping.is_set():
            outcomes = self.dispatch()
            tried += len(outcomes)
            if not outcomes or outcomes[-1] == "retry":
                break
            if len(outcomes) == _MAX_BATCH:
                self._due.set()  # more may be due: an idle peer joins in
        return tried

    def dispatch(self) -> list[str]:
        """Claim up to ``_MAX_BATCH`` due deliveries and trigger them; their outcomes.

        The first "Airflow unavailable" ends the batch: that delivery is rescheduled with backoff, the rest of
        the batch is left as it was (still pending and due) for the next look.
        """
        outcomes: list[str] = []
        lines: list[str] = []
        with self.pool.connection() as conn, conn.transaction():
            dispatched: list[str] = []
            for claimed in deliveries.claim_due(conn, _MAX_BATCH):
                if self._stopping.is_set():
                    break
                started = time.monotonic()
                try:
                    result = self._airflow.trigger(claimed.dag_id, claimed.dag_run_id, run_conf(claimed),
                                                   note=claimed.note)
                except AirflowUnavailable as error:
                    outcome, detail = "retry", self._retry_later(conn, claimed, error)
                except TriggerRefused as error:
                    deliveries.mark_failed(conn, claimed.delivery_id, str(error))
                    outcome, detail = "refused", str(error)
                except DagNotFound as error:
                    now = time.monotonic()
                    missing_for = now - self._missing_since.setdefault(claimed.dag_id, now)
                    if missing_for >= self._missing_dag_grace_s:
                        deliveries.mark_dead_lettered(conn, claimed.delivery_id,
                                                      f"DAG {claimed.dag_id} does not exist", str(error))
                        outcome, detail = "dead_lettered", f"{error}; missing for {missing_for:.0f}s"
                    else:
                        outcome, detail = "dag_missing", self._retry_later(conn, claimed, error)
                else:
                    self._missing_since.pop(claimed.dag_id, None)
                    dispatched.append(claimed.delivery_id)
                    outcome = "created" if result is TriggerOutcome.CREATED else "already_triggered"
                    detail = None
                outcomes.append(outcome)
                error_part = f" error={detail}" if detail else ""
                lines.append(f"trigger delivery={claimed.delivery_id} dag={claimed.dag_id} run={claimed.dag_run_id} "
                             f"outcome={outcome} attempt={claimed.attempts + 1} "
                             f"ms={(time.monotonic() - started) * 1000:.0f}{error_part}")
                if outcome == "retry":
                    break
            deliveries.mark_dispatched(conn, dispatched)
        with self._attempts_lock:
            self._attempts.update(outcomes)
        for line, outcome in zip(lines, outcomes):
            # A dead letter's line is the one record of it in the log: a warning.
            log.log(logging.WARNING if outcome == "dead_lettered" else logging.INFO, line)
        return outcomes

    def _retry_later(self, conn: psycopg.Connection, claimed: deliveries.ClaimedDelivery, error: Exception) -> str:
        """Leave the delivery pending, due again after the backoff for its attempts; the log line's detail."""
        delay = retry_delay(claimed.attempts, self._retry_base_s, self._retry_max_s)
        deliveries.mark_retry(conn, claimed.delivery_id, str(error), delay)
        return f"{error}; next attempt in {delay:.1f}s"


def _no_commit_wait(conn: psycopg.Connection) -> None:
    conn.execute("SET synchronous_commit = off")


def create_relay(config: Mapping | None = None) -> Relay:
    """A relay (not started); ``config`` overrides the settings read from the environment (see ``settings``)."""
    cfg = {**settings.from_environment(), **(config or {})}
    if not cfg["AIRFLOW_API_URL"]:
        raise ValueError("AIRFLOW_API_URL is not set: the relay has nowhere to trigger")
    url = database_url(cfg["DATABASE_URL"])
    connect_kwargs = {"autocommit": True, "connect_timeout": max(1, int(cfg["DB_TIMEOUT_S"])),
                      "application_name": APPLICATION_NAME}
    # The relay's writes need not wait for the WAL flush: one lost in a crash is redone by the next look (a delivery
    # triggered twice gets Airflow's 409, "already triggered"). A recorded delivery is always durable.
    pool = ConnectionPool(url, min_size=1, max_size=max(2, cfg["DB_POOL_MAX"]), kwargs=connect_kwargs,
                          configure=_no_commit_wait, check=ConnectionPool.check_connection, open=False,
                          name="webhook-relay")
    pool.open(wait=False)
    airflow = AirflowClient(cfg["AIRFLOW_API_URL"], cfg["AIRFLOW_USERNAME"] or "", cfg["AIRFLOW_PASSWORD"] or "",
                            timeout_s=cfg["AIRFLOW_TIMEOUT_S"])
    return Relay(pool, functools.partial(psycopg.connect, url, **connect_kwargs), airflow,
                 threads=cfg["RELAY_THREADS"], sweep_interval_s=cfg["SWEEP_INTERVAL_S"],
                 retry_base_s=cfg["RETRY_BASE_S"], retry_max_s=cfg["RETRY_MAX_S"],
                 missing_dag_grace_s=cfg["MISSING_DAG_GRACE_S"])


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m webhook_bridge.relay", description=__doc__.splitlines()[0],
                            epilog="Settings: the environment variables of webhook_bridge/settings.py").parse_args(argv)
    from webhook_bridge.app import log_to_stderr

    log_to_stderr()
    try:
        relay = create_relay()
    except (ValueError, DatabaseNotConfigured) as error:
        log.error("%s", error)
        return 2
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    relay.start()
    log.info("relay %s started", relay.relay_id)
    stopping.wait()
    relay.stop()
    log.info("relay %s stopped", relay.relay_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())

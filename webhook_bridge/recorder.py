"""Records deliveries in PostgreSQL, sharing one commit among the requests that arrive together.

Nothing is answered before its row is committed; the commit notifies the relay (``deliveries.record_many``). One
INSERT runs at a time per process, on the recorder's own connection, written by a request thread (the leader);
there is no writer thread. Requests that arrive while the
leader writes queue up and block on their own lock. When the leader's batch is committed it wakes every request
in it and hands the writer slot to the oldest request still queued, which writes everything queued by then in one
INSERT (one round trip, one WAL flush for the batch) and so on. Each waiting request is woken once: because its
row is committed, or because it leads the next batch. Alone, a delivery is a batch of one, written by its own
thread (or greenlet, under gevent workers).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from vdi.store import deliveries

_MAX_BATCH = 64


class NotRecordedInTime(psycopg.OperationalError):
    """The delivery's batch did not finish in time (a safety net: connecting and writing have their own limits)."""


def _held_lock() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass
class _Pending:
    delivery: deliveries.NewDelivery
    # Released when the outcome is known, or when the writer slot is handed to this request: a bare lock is the
    # cheapest thing a request thread can block on (an Event adds a Condition and its bookkeeping).
    done: threading.Lock = field(default_factory=_held_lock)
    finished: bool = False
    is_new: bool = False
    error: BaseException | None = None


class BatchRecorder:
    def __init__(self, connect: Callable[[], psycopg.Connection], db_timeout_s: float):
        """``connect`` opens an autocommit connection (with a connect timeout); it is called again after a break."""
        self._connect = connect
        self._conn: psycopg.Connection | None = None
        self._db_timeout_s = db_timeout_s
        self._lock = threading.Lock()
        self._queue: deque[_Pending] = deque()
        self._writing = False  # the writer slot: held by the request thread writing a batch

    def record(self, delivery: deliveries.NewDelivery) -> bool:
        """True when the delivery is new, once its row is committed; raises what the database raised."""
        pending = _Pending(delivery)
        with self._lock:
            self._queue.append(pending)
            leader = not self._writing
            self._writing = True
        if not leader and not pending.done.acquire(timeout=self._db_timeout_s * 3 + 5):
            self._give_up(pending)
        if not pending.finished:  # the slot is this request's: first in, or handed over by the last writer
            self._lead()
        if pending.error is not None:
            raise pending.error
        return pending.is_new

    def _give_up(self, pending: _Pending) -> None:
        """A safety net (connecting and writing have their own limits): stop waiting unless woken meanwhile."""
        with self._lock:
            if pending.done.acquire(blocking=False):
                return  # committed, or handed the slot, just now
            if pending in self._queue:
                self._queue.remove(pending)
        raise NotRecordedInTime("the delivery was not recorded in time")

    def _lead(self) -> None:
        """Holding the slot: write the oldest queued deliveries (this request's first among them), then hand the
        slot to the oldest request still queued, or free it."""
        with self._lock:
            batch = [self._queue.popleft() for _ in range(min(_MAX_BATCH, len(self._queue)))]
        try:
            self._write_batch(batch)
        finally:
            with self._lock:
                if self._queue:
                    self._queue[0].done.release()
                else:
                    self._writing = False

    def stop(self) -> None:
        """Close the connection (a later write would open a new one)."""
        self._drop_connection()

    def _write_batch(self, batch: list[_Pending]) -> None:
        """Write ``batch`` and wake its requests; never raises (errors go to each request)."""
        try:
            self._write(batch)
        except psycopg.DataError:
            # One unstorable row must not fail its neighbours: write them one at a time.
            for pending in batch:
                try:
                    self._write([pending])
                except Exception as error:
                    pending.error = error
        except Exception as error:
            for pending in batch:
                pending.error = error
        finally:
            for pending in batch:
                pending.finished = True
                pending.done.release()  # the leader's own lock too: nobody waits on it

    def _write(self, batch: list[_Pending]) -> None:
        """One INSERT for the batch; a connection that broke while idle gets one retry on a new one.

        Should a commit succeed but its answer be lost, the retry finds the rows and calls them duplicates:
        Jira still gets a 200, and the relay triggers them (the lost commit notified it; its sweep would find them).
        """
        rows = [pending.delivery for pending in batch]
        for attempt in (1, 2):
            try:
                new_ids = deliveries.record_many(self._connection(), rows)
                break
            except psycopg.OperationalError:
                self._drop_connection()
                if attempt == 2:
                    raise
        for pending in batch:
            delivery_id = pending.delivery.delivery_id
            pending.is_new = delivery_id in new_ids
            new_ids.discard(delivery_id)  # a second copy in the same batch is a duplicate

    def _connection(self) -> psycopg.Connection:
        """The writer's connection (only the slot holder uses it), opened when there is none."""
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

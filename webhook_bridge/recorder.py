"""Records deliveries in PostgreSQL, sharing one commit among the requests that arrive together.

Nothing is answered before its row is committed. At most ``writers`` INSERTs run at once per process. A request
that finds a writer slot free writes its delivery itself, in its own thread (no hand-off to another thread);
requests that arrive while every slot is busy queue up, and the next writer takes everything queued in one
INSERT (one round trip, one WAL flush for the batch): the request that freed the slot wakes a writer thread
for them. Alone, a delivery is a batch of one, written by the request's own thread.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from vdi.store import deliveries

_MAX_BATCH = 64


@dataclass
class _Pending:
    delivery: deliveries.NewDelivery
    done: threading.Event = field(default_factory=threading.Event)
    is_new: bool = False
    error: BaseException | None = None


class BatchRecorder:
    def __init__(self, pool: ConnectionPool, db_timeout_s: float, writers: int = 1):
        self._pool = pool
        self._db_timeout_s = db_timeout_s
        self._max_writers = max(1, writers)
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[_Pending] = deque()
        self._writing = 0  # INSERTs in progress (inline or in writer threads), at most _max_writers
        self._stopping = False
        self._threads = [threading.Thread(target=self._run, name=f"bridge-recorder-{n}", daemon=True)
                         for n in range(self._max_writers)]
        for thread in self._threads:
            thread.start()

    def record(self, delivery: deliveries.NewDelivery) -> bool:
        """True when the delivery is new, once its row is committed; raises what the database raised."""
        pending = _Pending(delivery)
        with self._cond:
            self._queue.append(pending)
            inline = self._writing < self._max_writers
            if inline:
                self._writing += 1
        if inline:
            self._write_inline(pending)
        # A writer gives up on the pool after db_timeout_s, so this bound is only a safety net.
        if not pending.done.wait(self._db_timeout_s * 3 + 5):
            raise PoolTimeout("the delivery was not recorded in time")
        if pending.error is not None:
            raise pending.error
        return pending.is_new

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(10)

    def _take(self) -> list[_Pending]:
        """The oldest queued deliveries, up to a batch (the caller holds the lock)."""
        batch = []
        while self._queue and len(batch) < _MAX_BATCH:
            batch.append(self._queue.popleft())
        return batch

    def _release_slot(self) -> None:
        with self._cond:
            self._writing -= 1
            if self._queue:
                self._cond.notify()

    def _write_inline(self, mine: _Pending) -> None:
        """In the request's thread, holding a writer slot: write batches until ``mine`` is among the written."""
        try:
            while not mine.done.is_set():
                with self._cond:
                    batch = self._take()
                if not batch:
                    break  # another writer took it; record() waits for it
                self._write_batch(batch)
        finally:
            self._release_slot()

    def _run(self) -> None:
        """A writer thread: writes what queued up while every slot was busy."""
        while True:
            with self._cond:
                while not (self._queue and self._writing < self._max_writers):
                    if self._stopping:
                        return
                    self._cond.wait()
                self._writing += 1
                batch = self._take()
            try:
                self._write_batch(batch)
            finally:
                self._release_slot()

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
                pending.done.set()

    def _write(self, batch: list[_Pending]) -> None:
        """One INSERT for the batch; a connection that broke while idle in the pool gets one retry.

        Should a commit succeed but its answer be lost, the retry finds the rows and calls them duplicates:
        Jira still gets a 200, and the dispatcher's sweep triggers them (no wake-up is lost for good).
        """
        rows = [pending.delivery for pending in batch]
        for attempt in (1, 2):
            try:
                with self._pool.connection(timeout=self._db_timeout_s) as conn:
                    new_ids = deliveries.record_many(conn, rows)
                break
            except PoolTimeout:
                raise
            except psycopg.OperationalError:
                if attempt == 2:
                    raise
        for pending in batch:
            delivery_id = pending.delivery.delivery_id
            pending.is_new = delivery_id in new_ids
            new_ids.discard(delivery_id)  # a second copy in the same batch is a duplicate

"""webhook_bridge.recorder: deliveries written by the request threads themselves, in shared batches."""

import functools
import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from tests.webhook_bridge.conftest import unreachable_url
from tests.plugins.vdi.store.test_deliveries import new
from vdi.states import DeliveryStatus
from vdi.store import deliveries
from webhook_bridge.recorder import BatchRecorder, NotRecordedInTime


class CountingConnect:
    """Opens autocommit connections and counts them and the INSERTs sent through them."""

    def __init__(self, url: str):
        self.url = url
        self.opened = 0
        self.inserts = 0

    def __call__(self) -> psycopg.Connection:
        self.opened += 1
        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=2)
        counter = self
        execute = conn.execute

        def counting_execute(query, params=None, **kwargs):
            if "INSERT INTO deliveries" in str(query):
                counter.inserts += 1
            return execute(query, params, **kwargs)

        conn.execute = counting_execute
        return conn


@pytest.fixture
def recorder_for(app_database_url):
    made = []

    def make(connect=None, db_timeout_s: float = 5) -> BatchRecorder:
        recorder = BatchRecorder(connect or functools.partial(psycopg.connect, app_database_url, autocommit=True),
                                 db_timeout_s)
        made.append(recorder)
        return recorder

    yield make
    for recorder in made:
        recorder.stop()


def stored(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute("SELECT delivery_id FROM deliveries ORDER BY delivery_id")]


def test_concurrent_copies_make_one_new_row(recorder_for, app_database_url):
    recorder = recorder_for()
    with ThreadPoolExecutor(10) as threads:
        outcomes = list(threads.map(lambda _: recorder.record(new("same")), range(10)))
        mixed = list(threads.map(lambda n: recorder.record(new(f"m{n % 3}")), range(9)))
    assert sorted(outcomes) == [False] * 9 + [True]
    assert sorted(mixed) == [False] * 6 + [True] * 3
    assert stored(app_database_url) == ["m0", "m1", "m2", "same"]


def test_requests_arriving_together_share_inserts_and_one_connection(recorder_for, app_database_url):
    connect = CountingConnect(app_database_url)
    recorder = recorder_for(connect)
    with ThreadPoolExecutor(16) as threads:
        outcomes = list(threads.map(lambda n: recorder.record(new(f"d{n:03d}")), range(400)))
    assert outcomes == [True] * 400 and len(stored(app_database_url)) == 400
    assert connect.opened == 1
    assert connect.inserts < 400  # some batches held several deliveries


def test_an_unstorable_row_fails_alone(recorder_for, app_database_url):
    recorder = recorder_for()
    bad = deliveries.NewDelivery("bad", False, "e", "VDI-1", {}, DeliveryStatus.PENDING, dag_id="d",
                                 dag_run_id="jira__bad", payload_json='{"t": "\\u0000"}')
    gate = threading.Barrier(6)

    def record(delivery):
        gate.wait()
        return recorder.record(delivery)

    with ThreadPoolExecutor(6) as threads:
        futures = [threads.submit(record, delivery) for delivery in [bad, *(new(f"ok{n}") for n in range(5))]]
    with pytest.raises(psycopg.DataError):
        futures[0].result()
    assert [future.result() for future in futures[1:]] == [True] * 5
    assert stored(app_database_url) == [f"ok{n}" for n in range(5)]


def test_database_down_raises_operational_error_and_frees_the_writer(recorder_for, app_database_url):
    down = recorder_for(lambda: psycopg.connect(unreachable_url().replace("http", "postgresql") + "/x",
                                                connect_timeout=1))
    with pytest.raises(psycopg.OperationalError):
        down.record(new("lost"))
    with pytest.raises(psycopg.OperationalError):  # the slot was freed: the next request tries again
        down.record(new("lost"))
    assert stored(app_database_url) == []


def test_a_broken_connection_is_replaced_once(recorder_for, app_database_url):
    connect = CountingConnect(app_database_url)
    recorder = recorder_for(connect)
    assert recorder.record(new("first"))
    recorder._conn.pgconn.finish()  # the server side is gone, as after a PostgreSQL restart
    assert recorder.record(new("second"))
    assert connect.opened == 2 and stored(app_database_url) == ["first", "second"]


def test_a_request_stuck_behind_a_hung_write_gives_up_and_the_queue_moves_on(recorder_for, app_database_url):
    release = threading.Event()
    opened = threading.Event()

    def hanging_connect():
        opened.set()
        release.wait(30)  # the database does not answer until released
        return psycopg.connect(app_database_url, autocommit=True)

    recorder = recorder_for(hanging_connect, db_timeout_s=0)  # waiters give up after 5 s
    with ThreadPoolExecutor(2) as threads:
        leader = threads.submit(recorder.record, new("leader"))
        assert opened.wait(10)
        with pytest.raises(NotRecordedInTime):
            recorder.record(new("waiter"))
        release.set()
        assert leader.result(timeout=30) is True
    assert recorder.record(new("after")) is True  # nothing was left holding the writer slot
    assert stored(app_database_url) == ["after", "leader"]

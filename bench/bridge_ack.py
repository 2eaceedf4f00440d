"""Ack latency and throughput of the webhook bridge, side by side with the same server answering a bare 200.

    .venv/bin/python -m bench.bridge_ack [--requests 3000] [--concurrency 16] [--rate 100] [--seconds 10]
                                         [--backlog 7000]

Run from the repository root. One gunicorn (the package's config, ``webhook_bridge/gunicorn.conf.py``) serves the
real app plus one extra route, ``POST /bench/bare`` → 200 with no work: the floor. The relay
(``python -m webhook_bridge.relay``) runs beside it, as in the local stack. A real embedded PostgreSQL (pgserver)
records the deliveries; Airflow is a real-HTTP stand-in in a process of its own whose trigger answer can be
delayed, so the run shows whether the ack follows Airflow's latency. Everything listens on loopback; every phase
is bounded in count and time.

Phases, all in one run:
1. closed loop, ``--concurrency`` clients, ``--requests`` in all for: bare 200, signed deliveries (Airflow
   answering after ``--fast-ms``), signed deliveries (Airflow answering after ``--slow-ms``);
2. open loop at ``--rate`` requests/s for ``--seconds``: bare 200, then signed deliveries, while the relay works
   through a backlog of at least ``--backlog`` pending deliveries (topped up before the phase), Airflow answering
   after ``--fast-ms``.
The stand-in's latencies default to Airflow's own: idle, and under 10-20 concurrent triggers. Latency is measured
from the scheduled send time in the open loop (no coordinated omission).

Exit status: 0 every floor met; 3 a floor missed (the FAIL lines); 2 the run is not valid (requests failed, or the
relay triggered nothing during the open loop); 1 the benchmark itself broke.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import webhook_bridge
from bench import free_port, in_threads, wait_for
from bench.airflow_stub import AirflowStub
from webhook_bridge.signature import sign

REPO_ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret"
EXIT_FLOOR_MISSED = 3
EXIT_INVALID_RUN = 2


def bench_app():
    """The real bridge app plus the floor route (gunicorn loads this in each worker)."""
    from flask import Response

    from webhook_bridge import create_app

    app = create_app()

    @app.post("/bench/bare")
    def bare():
        return Response(status=200)

    return app


def _serve_airflow(pipe, delay_s, triggered) -> None:
    """The Airflow stand-in's process: its trigger latency and trigger count are shared with the bench."""

    class SharedStub(AirflowStub):
        @property
        def delay_s(self) -> float:
            return delay_s.value

        @delay_s.setter
        def delay_s(self, value: float) -> None:
            delay_s.value = value

        def trigger(self, path: str, body: dict) -> tuple[int, dict]:
            status, payload = super().trigger(path, body)
            if status == 200:
                with triggered.get_lock():
                    triggered.value += 1
            return status, payload

    stub = SharedStub("bench", "bench")
    pipe.send(stub.url)
    stub.thread.join()


class AirflowProcess:
    """The Airflow stand-in in a process of its own, as Airflow is: its HTTP handling then competes with the
    bridge for the CPUs, as a co-located Airflow would, but not for the load generator's GIL."""

    def __init__(self):
        context = multiprocessing.get_context("spawn")
        self._delay_s = context.Value("d", 0.0)
        self._triggered = context.Value("q", 0)
        ours, theirs = context.Pipe()
        self.process = context.Process(target=_serve_airflow, args=(theirs, self._delay_s, self._triggered),
                                       daemon=True)
        self.process.start()
        self.url = ours.recv()

    @property
    def delay_s(self) -> float:
        return self._delay_s.value

    @delay_s.setter
    def delay_s(self, value: float) -> None:
        self._delay_s.value = value

    @property
    def triggered(self) -> int:
        return self._triggered.value

    def close(self) -> None:
        self.process.terminate()
        self.process.join(10)


def jira_body() -> bytes:
    """A fresh ~1 KB approval: ``jira:issue_updated`` moving the issue to Approved (the default routes take it)."""
    return json.dumps({
        "timestamp": int(time.time() * 1000), "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_generic", "user": {"accountId": "5b10a2844c20165700ede21g"},
        "issue": {"id": "10002", "key": f"VDI-{uuid.uuid4().int % 10**6 + 1}", "fields": {
            "project": {"key": "VDI"}, "issuetype": {"name": "Desktop"}, "status": {"name": "Approved"},
            "summary": "Desktop for an artist", "description": "x" * 480}},
        "changelog": {"id": "10100", "items": [{"field": "status", "fieldtype": "jira", "fieldId": "status",
                                                "from": "1", "fromString": "Open", "to": "10001",
                                                "toString": "Approved"}]},
    }).encode()


def signed_request() -> tuple[bytes, dict]:
    body = jira_body()
    return body, {"Content-Type": "application/json", "X-Hub-Signature": sign(SECRET, body),
                  "X-Atlassian-Webhook-Identifier": str(uuid.uuid4())}


def top_up_backlog(database_url: str, target: int) -> int:
    """Record pending deliveries, as the bridge does (each commit notifies the relay), until at least ``target``
    are pending; how many are pending then."""
    import psycopg

    from vdi.states import DeliveryStatus
    from vdi.store import deliveries

    with psycopg.connect(database_url, autocommit=True) as conn:
        pending = deliveries.backlog(conn).pending
        while pending < target:
            batch = []
            for _ in range(min(500, target - pending)):
                body, delivery_id = jira_body(), f"backlog-{uuid.uuid4()}"
                payload = json.loads(body)
                batch.append(deliveries.NewDelivery(
                    delivery_id, False, payload["webhookEvent"], payload["issue"]["key"], payload,
                    DeliveryStatus.PENDING, dag_id="vdi_provision", dag_run_id=f"jira__{delivery_id}",
                    payload_json=body.decode()))
            deliveries.record_many(conn, batch)
            pending = deliveries.backlog(conn).pending
    return pending


def relay_alive(database_url: str) -> bool:
    import psycopg

    from vdi.store import deliveries

    with psycopg.connect(database_url) as conn:
        return deliveries.relay_report(conn).last_beat_age_s is not None


class CpuMeter:
    """CPU seconds used by the client (this process), gunicorn (master and workers), the relay, PostgreSQL and the
    Airflow stand-in."""

    PARTS = ("client", "gunicorn", "relay", "postgres", "airflow")

    def __init__(self, gunicorn_pid: int, relay_pid: int, pgdata: Path, airflow_pid: int):
        import psutil

        self._psutil = psutil
        self.gunicorn = psutil.Process(gunicorn_pid)
        self.relay = psutil.Process(relay_pid)
        self.airflow = psutil.Process(airflow_pid)
        self.pgdata = str(pgdata)

    def _postgres(self):
        for process in self._psutil.process_iter(["cmdline"]):
            if self.pgdata in " ".join(process.info["cmdline"] or []):
                yield process
                yield from process.children(recursive=True)

    @staticmethod
    def _cpu(processes) -> float:
        total = 0.0
        for process in processes:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except Exception:  # exited
                pass
        return total

    def read(self) -> dict[str, float]:
        return {"client": self._cpu([self._psutil.Process()]),
                "gunicorn": self._cpu([self.gunicorn, *self.gunicorn.children(recursive=True)]),
                "relay": self._cpu([self.relay]),
                "postgres": self._cpu(set(self._postgres())),
                "airflow": self._cpu([self.airflow])}


@dataclass
class Result:
    name: str
    latencies_s: list[float]
    elapsed_s: float
    errors: int
    cpu_s: dict[str, float] | None = None

    def absorb(self, other: "Result", cpu_s: dict[str, float]) -> None:
        self.latencies_s += other.latencies_s
        self.elapsed_s += other.elapsed_s
        self.errors += other.errors
        self.cpu_s = {key: (self.cpu_s or {}).get(key, 0.0) + value for key, value in cpu_s.items()}

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    @property
    def throughput(self) -> float:
        return len(self.latencies_s) / self.elapsed_s

    def cpu_per_request_us(self, part: str) -> str:
        if not self.cpu_s:
            return "-"
        return f"{self.cpu_s[part] / len(self.latencies_s) * 1e6:,.0f}"

    def row(self) -> str:
        cpu = " | ".join(self.cpu_per_request_us(part) for part in CpuMeter.PARTS)
        return (f"| {self.name} | {len(self.latencies_s)} | {self.throughput:,.0f} | {self.percentile(0.5):.2f} | "
                f"{self.percentile(0.99):.2f} | {max(self.latencies_s) * 1000:.1f} | {self.errors} | {cpu} |")


class Client:
    """One keep-alive HTTP/1.1 connection to the bridge."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def post(self, path: str, body: bytes, headers: dict) -> int:
        try:
            self.conn.request("POST", path, body=body, headers=headers)
            response = self.conn.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            return 0


def closed_loop(port: int, name: str, path: str, expect: int, requests_total: int, concurrency: int) -> Result:
    work = [signed_request() for _ in range(requests_total)]
    chunks = [work[i::concurrency] for i in range(concurrency)]
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def run(chunk):
        nonlocal errors
        client = Client(port)
        mine, bad = [], 0
        for body, headers in chunk:
            started = time.perf_counter()
            status = client.post(path, body, headers)
            mine.append(time.perf_counter() - started)
            bad += status != expect
        with lock:
            latencies.extend(mine)
            errors += bad

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(run, chunks))
    return Result(name, latencies, time.perf_counter() - started, errors)


def open_loop(port: int, name: str, path: str, expect: int, rate: float, seconds: float) -> Result:
    count = int(rate * seconds)
    work = [signed_request() for _ in range(count)]
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    next_index = iter(range(count))
    t0 = time.perf_counter() + 0.2

    def worker():
        nonlocal errors
        client = Client(port)
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                return
            scheduled = t0 + index / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # pacing the open loop, not synchronisation
            body, headers = work[index]
            status = client.post(path, body, headers)
            done = time.perf_counter() - scheduled
            with lock:
                latencies.append(done)
                errors += status != expect

    in_threads(worker, 32, timeout_s=seconds + 60)
    return Result(name, latencies, time.perf_counter() - t0, errors)


def verdict(met: bool) -> str:
    return "PASS" if met else "FAIL"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per closed-loop case")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5, help="closed-loop slices per case, interleaved")
    parser.add_argument("--rate", type=float, default=100.0, help="open-loop requests per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="open-loop duration")
    parser.add_argument("--backlog", type=int, default=7000,
                        help="pending deliveries at the start of each open-loop phase, for the relay to work through")
    parser.add_argument("--fast-ms", type=float, default=40.0, help="Airflow stub trigger latency, idle Airflow")
    parser.add_argument("--slow-ms", type=float, default=500.0, help="Airflow stub trigger latency, busy Airflow")
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: the package's config)")
    args = parser.parse_args(argv)

    import psycopg
    import psutil

    from sandbox.stack.postgres import embedded_server
    from vdi.store.migrate import migrate

    workdir = Path(tempfile.mkdtemp(prefix="vdi-bench-"))
    pg = embedded_server(workdir / "pgdata")
    database_url = pg.get_uri()
    migrate(database_url)
    airflow = AirflowProcess()
    port = free_port()
    env = {**os.environ, "VDI_DATABASE_URL": database_url, "JIRA_WEBHOOK_SECRET": SECRET,
           "AIRFLOW_API_URL": airflow.url, "AIRFLOW_USERNAME": "bench", "AIRFLOW_PASSWORD": "bench"}
    if args.workers:
        env["BRIDGE_WORKERS"] = str(args.workers)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    gunicorn_conf = Path(webhook_bridge.__file__).with_name("gunicorn.conf.py")
    gunicorn = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", str(gunicorn_conf), "--bind", f"127.0.0.1:{port}",
         "bench.bridge_ack:bench_app()"],
        cwd=REPO_ROOT, env=env, stdout=open(workdir / "gunicorn.log", "w"), stderr=subprocess.STDOUT,
        start_new_session=True)
    relay = subprocess.Popen([sys.executable, "-m", "webhook_bridge.relay"], cwd=REPO_ROOT, env=env,
                             stdout=open(workdir / "relay.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    results: list[Result] = []
    backlog: list[tuple[int, int]] = []  # per open-loop phase: pending at its start, triggers during it
    try:
        def up() -> bool:
            try:
                return Client(port).post("/bench/bare", b"{}", {"Content-Type": "application/json"}) == 200
            except OSError:
                return False

        wait_for(up, 30, "gunicorn")
        wait_for(lambda: relay_alive(database_url), 30, "the relay")
        print(f"bench: gunicorn ({len(psutil.Process(gunicorn.pid).children())} workers) on 127.0.0.1:{port},"
              f" relay pid {relay.pid}; PostgreSQL {database_url.split('?')[0]}; logs in {workdir}", flush=True)
        closed_loop(port, "warm-up", "/webhooks/jira", 202, 300, args.concurrency)
        closed_loop(port, "warm-up", "/bench/bare", 200, 300, args.concurrency)

        meter = CpuMeter(gunicorn.pid, relay.pid, workdir / "pgdata", airflow.process.pid)

        def measured(run, *run_args) -> tuple[Result, dict[str, float]]:
            before = meter.read()
            result = run(port, *run_args)
            after = meter.read()
            return result, {key: after[key] - before[key] for key in after}

        # Closed loop: the three cases interleaved in --rounds slices, so background load hits them alike.
        closed = {"floor": Result("closed loop: bare 200 (floor)", [], 0.0, 0),
                  "fast": Result(f"closed loop: signed delivery, Airflow {args.fast_ms:.0f} ms", [], 0.0, 0),
                  "slow": Result(f"closed loop: signed delivery, Airflow {args.slow_ms:.0f} ms", [], 0.0, 0)}
        per_round = max(1, args.requests // args.rounds)
        for _ in range(args.rounds):
            for key, path, expect, delay_ms in (("floor", "/bench/bare", 200, args.fast_ms),
                                                ("fast", "/webhooks/jira", 202, args.fast_ms),
                                                ("slow", "/webhooks/jira", 202, args.slow_ms)):
                airflow.delay_s = delay_ms / 1000
                result, cpu = measured(closed_loop, key, path, expect, per_round, args.concurrency)
                closed[key].absorb(result, cpu)
        results.extend(closed.values())
        # Open loop, while the relay works through the backlog at the rate an idle Airflow takes triggers.
        airflow.delay_s = args.fast_ms / 1000
        for name, path, expect in ((f"{args.rate:.0f}/s: bare 200 (floor)", "/bench/bare", 200),
                                   (f"{args.rate:.0f}/s: signed delivery", "/webhooks/jira", 202)):
            pending = top_up_backlog(database_url, args.backlog)
            triggered = airflow.triggered
            result, cpu = measured(open_loop, f"{name}, relay working through {pending:,} pending", path, expect,
                                   args.rate, args.seconds)
            result.cpu_s = cpu
            results.append(result)
            backlog.append((pending, airflow.triggered - triggered))
        with psycopg.connect(database_url) as conn:
            recorded, pending = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE status = 'pending') FROM deliveries").fetchone()
    finally:
        for process in (gunicorn, relay):
            os.killpg(process.pid, signal.SIGTERM)
        for process in (gunicorn, relay):
            process.wait(30)
        pg.cleanup()
        airflow.close()

    floor, fast, slow, rate_floor, rate_signed = results
    print()
    print(f"concurrency {args.concurrency}, {args.requests} requests per closed-loop phase; open loop "
          f"{args.rate:.0f}/s for {args.seconds:.0f} s; {os.cpu_count()} CPUs shared by client, gunicorn, relay,"
          f" PostgreSQL and the Airflow stand-in")
    print()
    print("| phase | requests | req/s | p50 ms | p99 ms | max ms | errors | CPU µs/req client | gunicorn | relay"
          " | PostgreSQL | Airflow stand-in |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for result in results:
        print(result.row())
    print()
    ratio = fast.throughput / floor.throughput
    slow_ratio = slow.throughput / floor.throughput
    p50_shift = slow.percentile(0.5) - fast.percentile(0.5)
    p99 = rate_signed.percentile(0.99)
    floors_met = {
        "ratio": min(ratio, slow_ratio) >= 0.5,
        "p99": p99 <= 25,
        "p50 shift": abs(p50_shift) < args.slow_ms / 10,
    }
    print(f"throughput signed / floor: {ratio:.2f} (Airflow {args.fast_ms:.0f} ms), {slow_ratio:.2f} (Airflow"
          f" {args.slow_ms:.0f} ms)  [floor: >= 0.50]  {verdict(floors_met['ratio'])}")
    print(f"p99 ack at {args.rate:.0f}/s, relay working through {backlog[1][0]:,} pending: {p99:.2f} ms (bare 200:"
          f" {rate_floor.percentile(0.99):.2f} ms)  [floor: <= 25 ms]  {verdict(floors_met['p99'])}")
    print(f"ack p50 with Airflow {args.slow_ms:.0f} ms minus with Airflow {args.fast_ms:.0f} ms: {p50_shift:+.2f} ms"
          f"  [must not follow the {args.slow_ms:.0f} ms]  {verdict(floors_met['p50 shift'])}")
    print(f"relay triggers during the {args.rate:.0f}/s phases: {backlog[0][1]} / {backlog[1][1]}; deliveries"
          f" recorded: {recorded}; still pending at the end: {pending}")
    errors = sum(result.errors for result in results)
    relay_idle = any(triggered == 0 for _, triggered in backlog)
    if errors or relay_idle:
        print(f"bench: not a valid run ({errors} failed requests; relay idle during an open-loop phase: {relay_idle})")
        return EXIT_INVALID_RUN
    return 0 if all(floors_met.values()) else EXIT_FLOOR_MISSED


if __name__ == "__main__":
    sys.exit(main())

"""How fast the real Airflow API server creates DAG runs, one at a time and several at once.

    make run                                    # the local stack (VDI_DEMO=0 skips the demo)
    .venv/bin/python -m bench.airflow_trigger_rate [--runs 120] [--concurrency 1 2 4 8]

For each concurrency C: C threads, each with its own keep-alive connection, send ``--runs`` triggers in all
(``POST /api/v2/dags/vdi_provision/dagRuns``, logical date null), as the bridge's dispatcher does. The DAG is
paused meanwhile, so the runs are created but never scheduled; they are deleted afterwards and the DAG's paused
state is put back. This is what sets the bridge's default of two dispatcher threads per process.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from pathlib import Path

import urllib3

from bench import in_threads
from sandbox.stack.settings import REPO_ROOT, read_stack_env

DAG_ID = "vdi_provision"


class Airflow:
    def __init__(self, env: dict[str, str]):
        self.pool = urllib3.PoolManager(maxsize=16, retries=False, timeout=60)
        self.url = env["AIRFLOW_API_URL"].rstrip("/")
        answer = self.pool.request("POST", f"{self.url}/auth/token",
                                   json={"username": env["AIRFLOW_USERNAME"], "password": env["AIRFLOW_PASSWORD"]})
        if answer.status >= 400:
            raise SystemExit(f"bench: Airflow refused the token request (HTTP {answer.status})")
        self.headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}

    def call(self, method: str, path: str, body: dict | None = None) -> urllib3.BaseHTTPResponse:
        return self.pool.request(method, f"{self.url}/api/v2{path}", json=body, headers=self.headers)

    def trigger(self) -> tuple[str, int]:
        run_id = f"bench__{uuid.uuid4()}"
        answer = self.call("POST", f"/dags/{DAG_ID}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": {}})
        return run_id, answer.status


def phase(airflow: Airflow, concurrency: int, runs: int, created: list[str]) -> str:
    remaining = iter(range(runs))
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def work():
        nonlocal errors
        while True:
            with lock:
                if next(remaining, None) is None:
                    return
            started = time.perf_counter()
            run_id, status = airflow.trigger()
            with lock:
                latencies.append(time.perf_counter() - started)
                if status == 200:
                    created.append(run_id)
                else:
                    errors += 1

    started = time.perf_counter()
    in_threads(work, concurrency)
    elapsed = time.perf_counter() - started
    latencies.sort()
    p50, p90 = latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.9)] * 1000
    return f"| {concurrency} | {runs / elapsed:.1f} | {p50:.1f} | {p90:.1f} | {errors} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=120, help="triggers per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--stack-env", type=Path, default=REPO_ROOT / ".local" / "stack.env")
    args = parser.parse_args(argv)

    if not args.stack_env.exists():
        raise SystemExit(f"bench: {args.stack_env} not found: start the local stack with `make run` first")
    airflow = Airflow(read_stack_env(args.stack_env))
    was_paused = airflow.call("GET", f"/dags/{DAG_ID}").json()["is_paused"]
    airflow.call("PATCH", f"/dags/{DAG_ID}", {"is_paused": True})
    created: list[str] = []
    try:
        print("| concurrent triggers | runs created/s | p50 ms | p90 ms | errors |")
        print("|---:|---:|---:|---:|---:|")
        for concurrency in args.concurrency:
            print(phase(airflow, concurrency, args.runs, created), flush=True)
    finally:
        for run_id in created:
            airflow.call("DELETE", f"/dags/{DAG_ID}/dagRuns/{run_id}")
        airflow.call("PATCH", f"/dags/{DAG_ID}", {"is_paused": was_paused})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""CPU per log line and per metrics sample: from 8 threads at once (what gthread request threads did) against
one thread (what the bridge's journal thread does), side by side in one run.

    .venv/bin/python -m bench.journal_contention [--lines 5000] [--threads 8]

The log line goes through ``logging`` with the bridge's format to a file (as under gunicorn); the samples are the
bridge's own ``BridgeMetrics`` in prometheus_client's multiprocess mode (as under gunicorn). Each thread does a
little other Python work between calls, as a request does.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from bench import in_threads

LINE = {"delivery_id": "ed632f10-f500-4581-b791-4ce9044c42e7", "issue": "VDI-980745", "event": "jira:issue_created",
        "outcome": "accepted", "status": 202, "ms": 3.1, "id_from_body": False, "retry": None}


def cpu_per_call_us(call, threads: int, calls_per_thread: int) -> float:
    def work():
        for _ in range(calls_per_thread):
            sum(range(200))  # the rest of a request, roughly
            call()

    started = time.process_time()
    in_threads(work, threads)
    return (time.process_time() - started) / (threads * calls_per_thread) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=5000, help="calls per thread")
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="vdi-journal-bench-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(workdir)  # before prometheus_client is imported
    from webhook_bridge.metrics import BridgeMetrics

    logger = logging.getLogger("bench.delivery")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.StreamHandler(open(workdir / "log.txt", "w"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s %(message)s"))
    logger.addHandler(handler)
    metrics = BridgeMetrics(lambda: None)
    cases = {
        "log line": lambda: logger.info(json.dumps(LINE)),
        "metrics samples (counter + histogram)": lambda: (metrics.delivery("accepted"),
                                                          metrics.ack_seconds.observe(0.003)),
        "nothing (the loop alone)": lambda: None,
    }
    print(f"| CPU µs per call | {args.threads} threads at once | 1 thread | ratio |")
    print("|---|---:|---:|---:|")
    for name, call in cases.items():
        cpu_per_call_us(call, 1, 500)  # warm-up
        many = cpu_per_call_us(call, args.threads, args.lines)
        one = cpu_per_call_us(call, 1, args.lines * args.threads)
        print(f"| {name} | {many:.1f} | {one:.1f} | {many / one:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

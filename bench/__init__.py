"""Benchmarks: ratios against the floor of the same engine, measured side by side (results in RESULTS.md)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable


def in_threads(work: Callable[[], None], count: int, timeout_s: float | None = None) -> None:
    """Run ``work`` in ``count`` threads at once and wait for them (each join up to ``timeout_s``)."""
    threads = [threading.Thread(target=work) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout_s)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition: Callable[[], object], deadline_s: float, what: str, interval_s: float = 0.1):
    """``condition()``'s first truthy value, checked every ``interval_s``; TimeoutError after ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(interval_s)
    raise TimeoutError(f"{what} not within {deadline_s:.0f} s")

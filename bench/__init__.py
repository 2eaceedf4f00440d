"""Benchmarks: ratios against the floor of the same engine, measured side by side (results in RESULTS.md)."""

from __future__ import annotations

import threading
from collections.abc import Callable


def in_threads(work: Callable[[], None], count: int, timeout_s: float | None = None) -> None:
    """Run ``work`` in ``count`` threads at once and wait for them (each join up to ``timeout_s``)."""
    threads = [threading.Thread(target=work) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout_s)

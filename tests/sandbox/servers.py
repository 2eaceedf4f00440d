"""Run a sandbox app on a free loopback port in this process, over real HTTP (the sandboxes' own ``Listener``,
werkzeug's threaded server that can also go down for a while)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import requests
from flask import Flask

from sandbox.server import Listener
from tests.conftest import free_port


@contextmanager
def serving(make_app: Callable[[str], Flask]) -> Iterator[tuple[str, Flask]]:
    """Build the app for its own base URL, serve it, and yield ``(base_url, app)``."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    app = make_app(base_url)
    listener = Listener(app, "127.0.0.1", port)
    thread = threading.Thread(target=listener.serve_forever, name=f"sandbox-{port}", daemon=True)
    thread.start()
    try:
        yield base_url, app
    finally:
        listener.close()
        thread.join(timeout=10)


def admin_get(base_url: str, path: str, **params) -> list | dict:
    response = requests.get(f"{base_url}/_sandbox{path}", params=params, timeout=5)
    response.raise_for_status()
    return response.json()

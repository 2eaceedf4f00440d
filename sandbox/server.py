"""The sandboxes' shared server and command line: ``python -m sandbox.jira`` / ``python -m sandbox.leostream``."""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Flask
from werkzeug.serving import ThreadedWSGIServer

log = logging.getLogger(__name__)


class _Server(ThreadedWSGIServer):
    """werkzeug's threaded server (its ``werkzeug.socket`` makes ``drop`` faults possible), keeping track of its
    open connections so an outage can cut them."""

    def __init__(self, host: str, port: int, app: Flask):
        super().__init__(host, port, app)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request, client_address) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def cut_connections(self, keep: socket.socket | None = None) -> int:
        """Reset every open connection but ``keep``; how many were cut."""
        with self._connections_lock:
            connections = [c for c in self._connections if c is not keep]
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return len(connections)


class Listener:
    """Serves a sandbox app on ``host:port``, and can take it down for a while as a stopped server is down:
    ``outage(seconds)`` closes the listening socket (a new connection is refused) and cuts every open connection,
    then listens again on the same port when the time is up. The process and the app's state (a Jira sandbox's
    issues, its webhook deliveries) live on, as a real service's database outlives its restart. The app finds
    its listener as ``app.extensions["sandbox_listener"]``."""

    def __init__(self, app: Flask, host: str, port: int):
        self.app, self.host, self.port = app, host, port
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._wake = threading.Event()
        self._down = False
        self._up_at = 0.0  # time.monotonic() at which an outage ends
        self._server = _Server(host, port, app)
        app.extensions["sandbox_listener"] = self

    @property
    def down(self) -> bool:
        return self._down

    def serve_forever(self) -> None:
        """Serve until ``stop()`` (or KeyboardInterrupt), sitting out every outage."""
        while True:
            self._server.serve_forever()  # returns on shutdown(): an outage, or the end
            with self._lock:
                if not self._down or self._stopped.is_set():
                    return
            while not self._stopped.is_set() and (remaining := self._up_at - time.monotonic()) > 0:
                self._wake.wait(remaining)
                self._wake.clear()
            with self._lock:
                if self._stopped.is_set():
                    return
                self._server = _Server(self.host, self.port, self.app)
                self._down = False
            log.info("listening again on %s:%d", self.host, self.port)

    def outage(self, seconds: float, keep: socket.socket | None = None) -> None:
        """Refuse connections for ``seconds`` from now (an outage under way is lengthened to end then); every open
        connection but ``keep`` (the caller's, closed once it is answered) is cut. On return the port refuses."""
        with self._lock:
            self._up_at = time.monotonic() + seconds
            if self._down:
                return
            self._down = True
            server = self._server
        server.shutdown()
        server.socket.close()
        cut = server.cut_connections(keep)
        log.info("down for %.0f s: not listening on %s:%d, %d connection(s) cut", seconds, self.host, self.port, cut)

    def end_outage(self) -> None:
        """Listen again now (safe from a signal handler: takes no lock)."""
        self._up_at = 0.0
        self._wake.set()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        with self._lock:
            server, down = self._server, self._down
        if not down:
            server.shutdown()

    def close(self) -> None:
        """Stop, and release the port."""
        self.stop()
        self._server.server_close()


def serve(app: Flask, host: str, port: int) -> None:
    """Serve a sandbox with a ``Listener``: SIGTERM ends it, SIGUSR1 ends an outage early."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    listener = Listener(app, host, port)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    signal.signal(signal.SIGUSR1, lambda *_: listener.end_outage())
    logging.getLogger(app.name).info("listening on http://%s:%d", host, port)
    try:
        listener.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()


def main(name: str, description: str, url: str | None, default_port: int, build_app: Callable[[], Flask],
         argv: list[str] | None = None) -> int:
    """A sandbox's ``python -m`` entry: ``--host`` / ``--port`` (the port of ``url`` by default), the app from
    ``build_app()`` (a bad setting: one line on stderr, exit 2), then ``serve`` it."""
    parser = argparse.ArgumentParser(prog=f"python -m {name}", description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=urlsplit(url or "").port or default_port)
    args = parser.parse_args(argv)
    try:
        app = build_app()
    except (ValueError, OSError) as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 2
    serve(app, args.host, args.port)
    return 0

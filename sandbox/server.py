"""The sandboxes' shared server and command line: ``python -m sandbox.jira`` / ``python -m sandbox.leostream``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Flask
from werkzeug.serving import make_server


def serve(app: Flask, host: str, port: int) -> None:
    """Serve a sandbox with werkzeug's threaded server (its ``werkzeug.socket`` makes ``drop`` faults possible)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    server = make_server(host, port, app, threaded=True)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    logging.getLogger(app.name).info("listening on http://%s:%d", host, port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


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

"""moto's server app behind the EC2 hook, served by werkzeug's threaded server the way ``moto_server`` serves it:
in the foreground (``serve``, the stack's ``moto`` program) or on a thread (``ThreadedAwsServer``, for tests)."""

from __future__ import annotations

import logging
import os
import signal
import threading

from werkzeug.serving import BaseWSGIServer, make_server

from sandbox.aws.hook import Ec2Hook


def build_app(hooked: bool = True):
    """moto's server app, behind the EC2 hook unless ``hooked`` is false (the benchmark's baseline)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    app = DomainDispatcherApplication(create_backend_app)
    return Ec2Hook(app) if hooked else app


def _server(host: str, port: int, hooked: bool = True) -> BaseWSGIServer:
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    os.environ.setdefault("MOTO_PORT", str(port))  # moto builds some URLs (S3 presigning, SQS) from it
    return make_server(host, port, build_app(hooked), threaded=True, request_handler=MotoRequestHandler)


def serve(host: str, port: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    server = _server(host, port)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    logging.getLogger("sandbox.aws").info("moto with the EC2 hook listening on http://%s:%d", host, port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


class ThreadedAwsServer:
    """The hooked moto server on a thread of this process (moto's state is this process's, shared with any other
    moto server or mock in it)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, hooked: bool = True) -> None:
        self._server = _server(host, port, hooked)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="aws-sandbox")

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ThreadedAwsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

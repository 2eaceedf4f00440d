"""``python -m sandbox.leostream [--host H] [--port P]``: run the Leostream sandbox.

Settings come from the environment: ``LEOSTREAM_URL`` (the port defaults to it), ``LEOSTREAM_USER`` and
``LEOSTREAM_PASSWORD`` (the API account), ``AWS_ENDPOINT_URL`` (where AWS centers read EC2),
``LEOSTREAM_SANDBOX_SESSION_TTL_S`` (lifetime of an API session from login; default 43200 s, the 12 h one
client documents) and ``LEOSTREAM_SANDBOX_POLL_SCALE`` (multiplies a center's ``poll_interval`` minutes; default
0.05, 0 = no polling).
"""

from __future__ import annotations

import argparse
import os
import sys
from urllib.parse import urlsplit

from sandbox import faults
from sandbox.leostream.app import create_app


def main(argv: list[str] | None = None) -> int:
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m sandbox.leostream", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=urlsplit(env.get("LEOSTREAM_URL", "")).port or 8082)
    args = parser.parse_args(argv)
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ.setdefault(key, value)
    try:
        app = create_app({
            "LEOSTREAM_USER": env.get("LEOSTREAM_USER", "vdi-api"),
            "LEOSTREAM_PASSWORD": env.get("LEOSTREAM_PASSWORD", ""),
            "AWS_ENDPOINT_URL": env.get("AWS_ENDPOINT_URL") or None,
            "SESSION_TTL_S": float(env.get("LEOSTREAM_SANDBOX_SESSION_TTL_S", "43200")),
            "POLL_SCALE": float(env.get("LEOSTREAM_SANDBOX_POLL_SCALE", "0.05")),
        })
    except ValueError as error:
        print(f"sandbox.leostream: {error}", file=sys.stderr)
        return 2
    faults.serve(app, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())

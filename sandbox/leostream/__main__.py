"""``python -m sandbox.leostream [--host H] [--port P]``: run the Leostream sandbox.

Settings come from the environment: ``LEOSTREAM_URL`` (the port defaults to it), ``LEOSTREAM_USER`` and
``LEOSTREAM_PASSWORD`` (the API account), ``AWS_ENDPOINT_URL`` (where AWS centers read EC2),
``LEOSTREAM_SANDBOX_SESSION_TTL_S`` (lifetime of an API session from login; default 43200 s, the 12 h one
client documents), ``LEOSTREAM_SANDBOX_POLL_SCALE`` (multiplies a center's ``poll_interval`` minutes; default
0.05, 0 = no polling), ``LEOSTREAM_SANDBOX_FIRST_BOOT_DELAY_S`` (how long each desktop's first boot takes in the
first-boot stand-in; default 2 s) and ``LEOSTREAM_SANDBOX_FIRST_BOOT_POLL_S`` (how often the stand-in looks for
new instances; default 0.5 s, 0 = no stand-in).
"""

from __future__ import annotations

import os
import sys

from sandbox import server
from sandbox.leostream.app import create_app


def build_app():
    env = os.environ
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        env.setdefault(key, value)
    return create_app({
        "LEOSTREAM_USER": env.get("LEOSTREAM_USER", "vdi-api"),
        "LEOSTREAM_PASSWORD": env.get("LEOSTREAM_PASSWORD", ""),
        "AWS_ENDPOINT_URL": env.get("AWS_ENDPOINT_URL") or None,
        "SESSION_TTL_S": float(env.get("LEOSTREAM_SANDBOX_SESSION_TTL_S", "43200")),
        "POLL_SCALE": float(env.get("LEOSTREAM_SANDBOX_POLL_SCALE", "0.05")),
        "FIRST_BOOT_DELAY_S": float(env.get("LEOSTREAM_SANDBOX_FIRST_BOOT_DELAY_S", "2")),
        "FIRST_BOOT_POLL_S": float(env.get("LEOSTREAM_SANDBOX_FIRST_BOOT_POLL_S", "0.5")),
    })


def main(argv: list[str] | None = None) -> int:
    return server.main("sandbox.leostream", __doc__, os.environ.get("LEOSTREAM_URL"), 8082, build_app, argv)


if __name__ == "__main__":
    sys.exit(main())

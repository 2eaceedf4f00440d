"""``python -m sandbox.aws [--host H] [--port P]``: moto's server (EC2, S3, Secrets Manager, STS, IAM) with the EC2
fault hook and client-token memory of ``sandbox.aws.hook``; the port defaults to ``AWS_ENDPOINT_URL``'s, else 5000."""

from __future__ import annotations

import argparse
import os
from urllib.parse import urlsplit

from sandbox.aws.server import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.aws", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=urlsplit(os.environ.get("AWS_ENDPOINT_URL", "")).port or 5000)
    args = parser.parse_args(argv)
    serve(args.host, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

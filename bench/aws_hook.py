"""What the EC2 hook in front of moto (sandbox/aws) adds to each call, two ways in one run:

- the hook alone: its WSGI layer around an app that answers at once, against that app called directly, for a
  DescribeInstances and a RunInstances with a new ClientToken (which the hook remembers);
- over HTTP with boto3: the stand-in's server with and without the hook side by side in one process (one moto
  state), the same DescribeInstances calls in alternating rounds.

    .venv/bin/python -m bench.aws_hook [--rounds 15] [--calls 20]
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import statistics
import time
import uuid

AUTHORIZATION = ("AWS4-HMAC-SHA256 Credential=testing/20261201/us-east-1/ec2/aws4_request, SignedHeaders=host, "
                 "Signature=0")


def _environ(body: bytes) -> dict:
    return {"REQUEST_METHOD": "POST", "PATH_INFO": "/", "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1",
            "CONTENT_TYPE": "application/x-www-form-urlencoded; charset=utf-8", "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body), "HTTP_AUTHORIZATION": AUTHORIZATION}


def _answer_at_once(environ, start_response):
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/xml")])
    return [b"<Response/>"]


def _wsgi_per_call(app, bodies, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        b"".join(app(_environ(next(bodies)), lambda status, headers, exc_info=None: None))
    return (time.perf_counter() - started) / calls


def hook_alone(rounds: int, calls: int) -> dict[str, float]:
    """Median microseconds the hook adds per call, by action."""
    from sandbox.aws.hook import Ec2Hook

    hook = Ec2Hook(_answer_at_once)
    describe = b"Action=DescribeInstances&Version=2016-11-15&Filter.1.Name=tag%3Avdi%3Aissue&Filter.1.Value.1=VDI-1"

    def describes():
        while True:
            yield describe

    def launches():  # a new token each time, as each launch generation has
        while True:
            yield (b"Action=RunInstances&Version=2016-11-15&ImageId=ami-1&InstanceType=t3.micro&MinCount=1&"
                   b"MaxCount=1&UserData=" + b"A" * 4000 + b"&ClientToken=" + uuid.uuid4().hex.encode())

    added = {}
    for action, bodies in {"DescribeInstances": describes, "RunInstances": launches}.items():
        direct, hooked = [], []
        for _ in range(rounds):
            direct.append(_wsgi_per_call(_answer_at_once, bodies(), calls * 50))
            hooked.append(_wsgi_per_call(hook, bodies(), calls * 50))
        added[action] = (statistics.median(hooked) - statistics.median(direct)) * 1e6
    return added


def over_http(rounds: int, calls: int) -> tuple[float, float]:
    """Median milliseconds per boto3 DescribeInstances: moto's app alone, behind the hook."""
    import boto3
    from botocore.config import Config

    from sandbox.aws.server import ThreadedAwsServer

    bare = ThreadedAwsServer(hooked=False).start()
    hooked = ThreadedAwsServer().start()
    try:
        clients = [boto3.client("ec2", endpoint_url=url, region_name="us-east-1",
                                config=Config(retries={"mode": "standard", "total_max_attempts": 1}))
                   for url in (bare.url, hooked.url)]
        samples: list[list[float]] = [[], []]

        def per_call(ec2) -> float:
            started = time.perf_counter()
            for _ in range(calls):
                ec2.describe_instances(Filters=[{"Name": "tag:vdi:issue", "Values": ["VDI-1"]}])
            return (time.perf_counter() - started) / calls

        for ec2 in clients:  # warm both: connections, moto's lazy backends
            per_call(ec2)
        for round_ in range(rounds):
            for index in ((0, 1) if round_ % 2 == 0 else (1, 0)):
                samples[index].append(per_call(clients[index]))
        return statistics.median(samples[0]) * 1000, statistics.median(samples[1]) * 1000
    finally:
        hooked.stop()
        bare.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.aws_hook", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20, help="HTTP calls per round and server (x50 in-process)")
    args = parser.parse_args(argv)
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ.setdefault(key, value)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    print(f"the hook alone, in-process ({args.rounds} rounds x {args.calls * 50} calls, median):")
    for action, microseconds in hook_alone(args.rounds, args.calls).items():
        print(f"  {action:18} adds {microseconds:6.1f} us per call")
    bare_ms, hooked_ms = over_http(args.rounds, args.calls)
    print(f"over HTTP, boto3 DescribeInstances ({args.rounds} rounds x {args.calls} calls, median):")
    print(f"  moto {bare_ms:.2f} ms   moto + hook {hooked_ms:.2f} ms   added {hooked_ms - bare_ms:+.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

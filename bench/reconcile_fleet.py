"""The reconcile over a large fleet: wall time and calls per system, at two fleet sizes side by side.

    .venv/bin/python -m bench.reconcile_fleet [--sizes 1000,10000] [--planted 10]

Each size gets a fresh fleet: that many ready desktops, each an EC2 instance in a real moto server (tagged as
the DAG tags them), a pool in the Leostream sandbox, a ticket in Jira's sandbox (both served over HTTP in this
process) and a request in an embedded PostgreSQL; plus ``--planted`` cases of every kind the reconcile fixes
(orphan instances, lost desktops, orphan pools, tickets out of step, lost webhooks, stuck requests). The fleet is
built behind the APIs' backs (setup is not measured); the reconcile then runs its parts as the DAG's tasks do
(deliveries, lost webhooks, drift, stuck; without Airflow) twice: the first pass fixes the planted cases, the
second must find nothing to fix. Calls are counted per system: EC2 API calls, Leostream and Jira HTTP requests,
SQL statements. A pass that raises, or a second pass that finds something to fix, fails the run (exit 1).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench import free_port

REGION = "eu-west-3"
BROKER_USER, BROKER_PASSWORD = "vdi-api", "bench-broker-password"
JIRA_USER, JIRA_TOKEN = "vdi-bot@studio.example", "bench-jira-token"
KINDS = ("orphan_instance", "desktop_lost", "orphan_broker_pool", "ticket_status")


@contextmanager
def serving(app) -> Iterator[str]:
    from werkzeug.serving import make_server

    port = app.config["_PORT"]
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


class Fleet:
    """One fleet of ``size`` desktops and ``planted`` cases of each kind, across the four systems."""

    def __init__(self, size: int, planted: int, database_url: str, moto_url: str, project: str):
        self.size, self.planted, self.database_url, self.moto_url = size, planted, database_url, moto_url
        self.project = project

    def build(self, jira_app, broker_app) -> dict[str, list[str]]:
        import boto3
        import psycopg
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ec2.models import ec2_backends

        from vdi.broker import pool_name_for
        from vdi.ec2 import instance_name
        from vdi.request import request_id_for

        p = self.planted
        keys = [f"{self.project}-{n}" for n in range(1, self.size + 1)]
        extra = iter(range(self.size + 1, self.size + 1 + 10 * p))
        plant = {kind: [f"{self.project}-{next(extra)}" for _ in range(p)]
                 for kind in ("orphan_instance", "desktop_lost", "orphan_broker_pool", "ticket_status",
                              "lost_webhook", "stuck_request")}
        ec2 = boto3.client("ec2", endpoint_url=self.moto_url, region_name=REGION)
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        with_instances = keys + plant["orphan_instance"] + plant["desktop_lost"] + plant["ticket_status"]
        instance_ids: list[str] = []
        for start in range(0, len(with_instances), 1000):
            count = len(with_instances[start:start + 1000])
            reservation = ec2.run_instances(ImageId=image, MinCount=count, MaxCount=count, InstanceType="t3.micro")
            instance_ids += [i["InstanceId"] for i in reservation["Instances"]]
        backend = ec2_backends[DEFAULT_ACCOUNT_ID][REGION]
        one_per_desktop(backend)
        by_key = dict(zip(with_instances, instance_ids))
        for key, instance_id in by_key.items():
            request_id = str(uuid.uuid4()) if key in plant["orphan_instance"] else str(request_id_for(key))
            backend.create_tags([instance_id], {"Name": instance_name(key), "vdi:issue": key,
                                                "vdi:request": request_id, "vdi:user": "artist"})
        ec2.terminate_instances(InstanceIds=[by_key[k] for k in plant["desktop_lost"]])

        ready = keys + plant["desktop_lost"] + plant["ticket_status"]
        rows = [(request_id_for(k), k, self.project, f"artist{n % 500}", "ready", "jira_ready", "run-1", by_key[k])
                for n, k in enumerate(ready)]
        rows += [(request_id_for(k), k, self.project, "artist", "rejected", "persist", None, None)
                 for k in plant["orphan_broker_pool"]]
        rows += [(request_id_for(k), k, self.project, "artist", "in_progress", "wait_bootstrap", f"gone-{k}", None)
                 for k in plant["stuck_request"]]
        with psycopg.connect(self.database_url, autocommit=True) as conn, conn.cursor() as cur:
            with cur.copy("COPY desktop_requests (request_id, issue_key, project_key, desktop_user, bundle, os,"
                          " state, step, owner_run_id, instance_id) FROM STDIN") as copy_in:
                for request_id, key, project, user, state, step, owner, instance_id in rows:
                    copy_in.write_row((request_id, key, project, user, "standard", "linux", state, step, owner,
                                       instance_id))
            cur.execute("UPDATE desktop_requests SET updated_at = now() - interval '5 hours'"
                        " WHERE state = 'in_progress'")

        site = jira_app.extensions["jira_site"]
        desktop_request = next(t for t in site.issue_types.values() if t["name"] == "Desktop Request")
        creator = site.api_user
        status_of = {k: "Ready" for k in keys + plant["desktop_lost"]}
        status_of.update({k: "In Progress" for k in plant["ticket_status"] + plant["stuck_request"]})
        status_of.update({k: "Approved" for k in plant["lost_webhook"]})
        planted_keys = {key for keys_of_kind in plant.values() for key in keys_of_kind}
        with site.lock:
            for key, status in status_of.items():
                issue = site.next_issue(desktop_request, {"summary": f"Desktop {key}", "reporter": creator.account_id},
                                        creator)
                site.issues.pop(issue.key)
                issue = dataclasses.replace(issue, key=key, status=status)
                if status == "Approved":
                    issue = dataclasses.replace(issue, updated=issue.updated - timedelta(minutes=20))
                elif key not in planted_keys:  # a steady fleet: handed over weeks ago
                    issue = dataclasses.replace(issue, created=issue.created - timedelta(days=30),
                                                updated=issue.updated - timedelta(days=30))
                site.issues[key] = issue

        broker = broker_app.extensions["leostream_broker"]
        with broker.lock:
            template = {"name": "", "display_name": "", "notes": "", "read_only": 0, "pool_type": "D",
                        "running_desktops_threshold": 0, "created": "", "updated": "",
                        "pool_definition": {"restrict_by": "A", "parent_pool_id": 1, "pool_attribute_join": "A",
                                            "attributes": []},
                        "provision": {"provision_on_off": 0}}
            for key in keys + plant["desktop_lost"] + plant["ticket_status"] + plant["orphan_broker_pool"]:
                pool = copy.deepcopy(template)
                pool_id = broker.next_id("pool")
                pool.update(id=pool_id, name=pool_name_for(key), display_name=pool_name_for(key),
                            notes=f"VDI Studios {key}")
                pool["pool_definition"]["attributes"] = [{"vm_table_field": "name", "condition_type": "eq",
                                                          "text_to_match": instance_name(key)}]
                broker.pools[pool_id] = pool
        return plant


def one_per_desktop(backend) -> None:
    """Each instance in a reservation of its own, as the DAG launches them (one RunInstances per desktop):
    DescribeInstances pages by reservation, so a fleet launched here by the thousand would list in one page."""
    from moto.ec2.models.instances import Reservation
    from moto.ec2.utils import random_reservation_id

    for reservation in list(backend.reservations.values()):
        for instance in reservation.instances[1:]:
            single = Reservation(random_reservation_id(), reservation.owner_id)
            single.groups = list(reservation.groups)
            single.instances.append(instance)
            backend.reservations[single.id] = single
        del reservation.instances[1:]


def index_moto_tags() -> None:
    """moto looks up one instance's tags by scanning every tag of the region (``describe_tags`` with a
    ``resource-id`` filter), for each instance it filters or describes: quadratic in the fleet, hours at 10,000.
    Read them from its own per-resource dict instead, which holds the same tags."""
    from moto.ec2.models.core import TaggedEC2Resource
    from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

    def get_tags(self) -> list[dict[str, str]]:
        if not self.id:
            return []
        kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(self.id), "")
        return [{"resource_id": self.id, "key": key, "value": value, "resource_type": kind}
                for key, value in (self.ec2_backend.tags.get(self.id) or {}).items()]

    TaggedEC2Resource.get_tags = get_tags


class Counted:
    """Calls per system: hooks on the clients the reconcile is given; and the time spent waiting for EC2."""

    def __init__(self):
        self.calls: Counter = Counter()
        self.ec2_s = 0.0
        self._ec2_started = 0.0

    def ec2(self, client):
        def before(**_):
            self.calls.update(["ec2"])
            self._ec2_started = time.monotonic()

        def after(**_):
            self.ec2_s += time.monotonic() - self._ec2_started

        client.meta.events.register("before-call.ec2", before)
        client.meta.events.register("after-call.ec2", after)
        return client

    def http(self, session, system: str):
        session.hooks["response"].append(lambda response, *a, **k: self.calls.update([system]))
        return session

    def database(self, url: str):
        import psycopg

        calls = self.calls

        class CountingCursor(psycopg.Cursor):
            def execute(self, *args, **kwargs):
                calls.update(["sql"])
                return super().execute(*args, **kwargs)

        return psycopg.connect(url, autocommit=True, cursor_factory=CountingCursor)


def reconcile_once(conn, ec2, broker, jira, router) -> dict:
    """The DAG's parts, as its tasks call them (settings at their defaults, orphans terminated)."""
    from vdi.reconcile.deliveries import reconcile_deliveries
    from vdi.reconcile.drift import drift
    from vdi.reconcile.lost_webhooks import lost_webhooks
    from vdi.reconcile.stuck import stuck
    from vdi.settings import load

    settings = load()
    lost = lost_webhooks(conn, jira, router, lookback_s=settings.reconcile_lookback_s,
                         lost_after_s=settings.reconcile_lost_after_s, trigger_status=settings.jira_trigger_status,
                         page_size=settings.reconcile_jql_page, max_fixes=settings.reconcile_max_fixes,
                         dry_run=False)
    deliveries = reconcile_deliveries(conn, dry_run=False)
    deliveries.pop("triggers", None)
    found, _ = drift(conn, ec2, broker, jira, terminate_orphans=True, reprovision=False,
                     min_age_s=0, lookback_s=settings.reconcile_lookback_s, page_size=settings.reconcile_jql_page,
                     max_fixes=settings.reconcile_max_fixes,
                     dry_run=False)
    stuck_counts = stuck(conn, jira, ec2, None, lambda run_id: False,
                         in_progress_s=settings.reconcile_stuck_in_progress_s,
                         removing_s=settings.reconcile_stuck_removing_s, max_fixes=settings.reconcile_max_fixes,
                         dry_run=False)
    return {"deliveries": deliveries, "lost_webhooks": lost, "drift": found, "stuck": stuck_counts}


def fixes(result: dict) -> int:
    return (result["lost_webhooks"]["fixed"] + result["stuck"]["fixed"]
            + sum(result["drift"][kind]["fixed"] for kind in KINDS))


def to_fix(result: dict) -> int:
    """What a pass found that it could fix (found less what is only reported)."""
    parts = [result["lost_webhooks"], result["stuck"], *(result["drift"][kind] for kind in KINDS)]
    return sum(part["found"] - part["reported"] for part in parts)


def measure(size: int, planted: int, moto_url: str, server_url: str) -> dict:
    import boto3
    import psycopg
    from atlassian import Jira

    from sandbox.jira.app import create_app as jira_app
    from sandbox.leostream.app import create_app as leostream_app
    from vdi.jira import JiraTicket
    from vdi.leostream import LeostreamClient
    from vdi.reconcile.lost_webhooks import bridge_router
    from vdi.store.migrate import migrate

    name = f"reconcile_bench_{size}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(server_url)
    database_url = urlunsplit(parts._replace(path=f"/{name}"))
    migrate(database_url)
    os.environ["VDI_DATABASE_URL"] = database_url
    jira_port, broker_port = free_port(), free_port()
    # Issues are made with the site's own numbering, then renamed to the fleet's keys: numbering starts past them.
    japp = jira_app({"JIRA_URL": f"http://127.0.0.1:{jira_port}", "JIRA_USER": JIRA_USER, "JIRA_TOKEN": JIRA_TOKEN,
                     "FIRST_ISSUE_NUMBER": 10 * (size + 10 * planted), "_PORT": jira_port})
    bapp = leostream_app({"LEOSTREAM_USER": BROKER_USER, "LEOSTREAM_PASSWORD": BROKER_PASSWORD,
                          "AWS_ENDPOINT_URL": moto_url, "POLL_SCALE": 0, "FIRST_BOOT_POLL_S": 0, "_PORT": broker_port})
    fleet = Fleet(size, planted, database_url, moto_url, project="VDI")
    built = time.monotonic()
    fleet.build(japp, bapp)
    setup_s = time.monotonic() - built
    passes = []
    with serving(japp) as jira_url, serving(bapp) as broker_url:
        for _ in range(2):
            counted = Counted()
            ec2 = counted.ec2(boto3.client("ec2", endpoint_url=moto_url, region_name=REGION))
            broker = LeostreamClient(broker_url, BROKER_USER, BROKER_PASSWORD, verify=False)
            counted.http(broker.session, "leostream")
            jira = JiraTicket(Jira(url=jira_url, username=JIRA_USER, password=JIRA_TOKEN, api_version="2"))
            counted.http(jira.client.session, "jira")
            router = bridge_router({})
            with counted.database(database_url) as conn, broker:
                started = time.monotonic()
                result = reconcile_once(conn, ec2, broker, jira, router)
                wall_s = time.monotonic() - started
            passes.append({"wall_s": round(wall_s, 2), "ec2_s": round(counted.ec2_s, 2),
                           "calls": dict(counted.calls), "fixed": fixes(result),
                           "to_fix": to_fix(result), "result": result})
    japp.extensions["jira_dispatcher"].stop()
    return {"desktops": size, "planted_per_kind": planted, "setup_s": round(setup_s, 1), "passes": passes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="fleet sizes, comma-separated")
    parser.add_argument("--planted", type=int, default=10, help="planted cases of each kind")
    parser.add_argument("--json", type=Path, help="also write the full results here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    import logging

    from moto.server import ThreadedMotoServer

    from sandbox.stack.postgres import embedded_server

    # One warning per finding would swamp the output (the fixes are counted); BENCH_DEBUG=1 shows them.
    logging.disable(logging.NOTSET if os.environ.get("BENCH_DEBUG") else logging.WARNING)
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION}.items():
        os.environ.setdefault(key, value)
    workdir = Path(tempfile.mkdtemp(prefix="vdi-reconcile-bench-"))
    pg = embedded_server(workdir / "pgdata")
    moto_port = free_port()
    index_moto_tags()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    results, failed = [], False
    try:
        for size in sizes:
            from moto.core import DEFAULT_ACCOUNT_ID
            from moto.ec2.models import ec2_backends

            ec2_backends[DEFAULT_ACCOUNT_ID].pop(REGION, None)  # each size on an empty region
            results.append(measure(size, args.planted, f"http://127.0.0.1:{moto_port}", pg.get_uri()))
    finally:
        moto.stop()
        pg.cleanup()
    print("| desktops | pass | wall s | of which in EC2 (moto) s | EC2 calls | Leostream calls | Jira calls |"
          " SQL statements | fixed | left to fix |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for result in results:
        for number, one in enumerate(result["passes"], 1):
            calls = one["calls"]
            print(f"| {result['desktops']:,} | {number} | {one['wall_s']} | {one['ec2_s']} | {calls.get('ec2', 0)} |"
                  f" {calls.get('leostream', 0)} | {calls.get('jira', 0)} | {calls.get('sql', 0)} |"
                  f" {one['fixed']} | {one['to_fix'] if number == 2 else '-'} |")
        first, second = result["passes"]
        expected = 6 * args.planted
        if first["fixed"] != expected or second["to_fix"] != 0:
            failed = True
            print(f"FAILED at {result['desktops']}: first pass fixed {first['fixed']} of {expected}, second pass"
                  f" found {second['to_fix']} to fix", file=sys.stderr)
            print(json.dumps([first["result"], second["result"]], default=str, indent=1), file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(results, default=str, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Drift between the database, EC2 (our tags), the broker and Jira. Each listing is read once per run, in pages
(``vdi.reconcile.inventory``), and compared with the requests in one statement (``vdi.store.reconcile``):

* ``orphan_instance``: a live instance tagged with a request that no live request owns. Reported; terminated
  when ``VDI_RECONCILE_TERMINATE_ORPHANS`` is set and it was launched more than ``VDI_RECONCILE_LOST_AFTER_S``
  ago (a launch in flight is not an orphan).
* ``desktop_lost``: a ready request whose instance is gone or stopped. The request becomes ``failed`` at the
  reconcile, the requester is told in plain words, and, when ``VDI_RECONCILE_REPROVISION`` is set, its
  issue key is handed to the DAG's re-provisioning task (a manual run of ``vdi_provision`` takes it over).
* ``orphan_broker_pool``: a pool VDI Studios created (its name and notes say so) whose ticket has no live
  instance and no live request: its policy assignment and the pool are removed. One whose request names no
  user (so no policy to look in) is reported.
* ``ticket_status``: a ticket whose status disagrees with its request: a ready request's ticket is moved to
  *Ready*, a failed one's from *In Progress* to *Failed*; anything else is reported. A request in progress
  whose ticket went to *Ready* is seen within ``VDI_RECONCILE_LOOKBACK_S`` of that move.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg

from vdi import ec2 as ec2_ops
from vdi.broker import pool_name_for
from vdi.identity import policy_name_for
from vdi.jira import JiraTicket, JiraTransitionUnavailable
from vdi.leostream import LeostreamClient
from vdi.provision import FAILED_STATUS, IN_PROGRESS_STATUS, READY_STATUS
from vdi.reconcile import tally
from vdi.reconcile.inventory import product_pools, quoted, tagged_instances
from vdi.store import reconcile as store

log = logging.getLogger(__name__)

def orphan_instances(conn: psycopg.Connection, ec2, instances: list[dict[str, Any]], *, terminate: bool,
                     min_age_s: float, max_fixes: int, dry_run: bool) -> dict[str, int]:
    rows = store.orphan_instances(conn, instances)
    launched = {i["instance_id"]: i["launch_time"] for i in instances}
    now = datetime.now(timezone.utc)
    found = [store.Finding(row["instance_id"], row["issue_key"] or None,
                           {"request_state": row["state"] or "none", "request_id": row["request_id"]})
             for row in rows]

    def old_enough(finding: store.Finding) -> bool:
        launch_time = launched.get(finding.subject)
        return launch_time is None or now - launch_time > timedelta(seconds=min_age_s)

    def fix(finding: store.Finding) -> str:
        return ec2_ops.dispose_instance(ec2, finding.subject, "terminate")

    return tally.settle(conn, "orphan_instance", found, dry_run=dry_run, max_fixes=max_fixes, fix=fix,
                        fixable=lambda finding: terminate and old_enough(finding))


def _lost_comment(name: str, instance_state: str, reprovision: bool) -> str:
    what = "stopped" if instance_state in ("stopping", "stopped") else "removed"
    then = ("VDI Studios is preparing it again; you will find the connection details here when it is ready."
            if reprovision else "Contact the platform team to have it provisioned again.")
    return f"Your desktop {name} is no longer available: its machine was {what} outside VDI Studios. {then}"


def lost_desktops(conn: psycopg.Connection, jira: JiraTicket, instances: list[dict[str, Any]], *,
                  reprovision: bool, max_fixes: int, dry_run: bool) -> tuple[dict[str, int], list[dict[str, str]]]:
    """The counts, and the requests to provision again (``issue_key``, ``instance_id``: the instance lost)."""
    from vdi.provision import comment_once

    rows = {row["issue_key"]: row for row in store.lost_desktops(conn, instances)}
    found = [store.Finding(key, key, {"instance_id": row["instance_id"], "instance_state": row["instance_state"]})
             for key, row in rows.items()]
    again: list[dict[str, str]] = []

    def fix(finding: store.Finding) -> str:
        row = rows[finding.subject]
        if not store.mark_desktop_lost(conn, row["request_id"], row["instance_id"], row["instance_state"]):
            return "changed meanwhile"
        comment_once(conn, jira, row["issue_key"], f"desktop-lost-{row['instance_id']}",
                     _lost_comment(ec2_ops.instance_name(row["issue_key"]), row["instance_state"], reprovision))
        if reprovision:
            again.append({"issue_key": row["issue_key"], "instance_id": row["instance_id"] or "none"})
            return "marked failed, provisioning again"
        return "marked failed"

    counts = tally.settle(conn, "desktop_lost", found, dry_run=dry_run, max_fixes=max_fixes, fix=fix)
    return counts, again


class _Policies:
    """The broker's policies, listed once per run and only when a pool is to be removed."""

    def __init__(self, broker: LeostreamClient):
        self.broker = broker
        self._by_name: dict[str, int] | None = None

    def id_of(self, name: str) -> int | None:
        if self._by_name is None:
            self._by_name = {p["name"]: int(p["id"]) for p in self.broker.policies()}
        return self._by_name.get(name)


def orphan_pools(conn: psycopg.Connection, broker: LeostreamClient, instances: list[dict[str, Any]], *,
                 max_fixes: int, dry_run: bool) -> dict[str, int]:
    pools = product_pools(broker)
    live_keys = {i["issue_key"] for i in instances if i["issue_key"]}
    rows = {str(row["pool_id"]): row for row in store.orphan_pools(conn, pools, live_keys)}
    found = [store.Finding(pool_id, row["issue_key"], {"request_state": row["state"] or "none"})
             for pool_id, row in rows.items()]
    policies = _Policies(broker)

    def fix(finding: store.Finding) -> str | None:
        row = rows[finding.subject]
        pool_id = int(finding.subject)
        pool = broker.pool(pool_id)
        made_by_us = (pool.get("name") == pool_name_for(row["issue_key"])
                      and pool.get("notes") == f"VDI Studios {row['issue_key']}")
        if not made_by_us:
            return None  # not one VDI Studios made: never removed
        policy_id = policies.id_of(policy_name_for(row["desktop_user"]))
        if policy_id is not None:
            for assignment in broker.pool_assignments(policy_id):
                if int(assignment["pool_id"]) == pool_id:
                    broker.delete_pool_assignment(policy_id, int(assignment["id"]))
        broker.delete_pool(pool_id)
        return "removed"

    return tally.settle(conn, "orphan_broker_pool", found, dry_run=dry_run, max_fixes=max_fixes, fix=fix,
                        fixable=lambda finding: bool(rows[finding.subject]["desktop_user"]))


def ticket_statuses(conn: psycopg.Connection, jira: JiraTicket, *, lookback_s: float, page_size: int,
                    max_fixes: int, dry_run: bool) -> dict[str, int]:
    """Two searches: the tickets not in *Ready* (a steady fleet's desktops are, so this stays a page or so), and
    those moved to *Ready* within ``lookback_s`` (for a request still in progress)."""
    projects = store.request_projects(conn)
    tickets: list[tuple[str, str]] = []
    if projects:
        where = f"project in {quoted(projects)} AND status"
        issues = jira.search(f"{where} not in {quoted([READY_STATUS])} ORDER BY key ASC", ["status"],
                             page_size=page_size)
        issues += jira.search(f"{where} in {quoted([READY_STATUS])} AND updated >= -{max(1, int(lookback_s // 60))}m"
                              " ORDER BY key ASC", ["status"], page_size=page_size)
        tickets = [(i["key"], ((i.get("fields") or {}).get("status") or {}).get("name") or "") for i in issues]
    rows = {row["issue_key"]: row for row in store.status_mismatches(
        conn, tickets, ready=READY_STATUS, in_progress=IN_PROGRESS_STATUS, failed=FAILED_STATUS)}
    found = [store.Finding(key, key, {"request_state": row["state"], "ticket_status": row["status"]})
             for key, row in rows.items()]

    def fixable(finding: store.Finding) -> bool:
        row = rows[finding.subject]
        return row["state"] == "ready" or (row["state"] == "failed"
                                            and row["status"].lower() == IN_PROGRESS_STATUS.lower())

    def fix(finding: store.Finding) -> str | None:
        row = rows[finding.subject]
        target = READY_STATUS if row["state"] == "ready" else FAILED_STATUS
        try:
            jira.transition_to(row["issue_key"], target, via=(IN_PROGRESS_STATUS,) if target == READY_STATUS else ())
        except JiraTransitionUnavailable as unavailable:
            log.warning("reconcile ticket_status: %s", unavailable)
            return None
        if target == FAILED_STATUS:
            store.mark_ticket_failed(conn, row["request_id"])
        store.record_request_event(conn, row["request_id"], "ticket_moved",
                                   {"from": row["status"], "to": target})
        return f"moved to {target}"

    return tally.settle(conn, "ticket_status", found, dry_run=dry_run, max_fixes=max_fixes, fix=fix,
                        fixable=fixable)


def drift(conn: psycopg.Connection, ec2, broker: LeostreamClient, jira: JiraTicket, *, terminate_orphans: bool,
          reprovision: bool, min_age_s: float, lookback_s: float, page_size: int, max_fixes: int,
          dry_run: bool) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Every drift check, each listing read once; the counts per kind and the requests to provision again."""
    started = time.monotonic()
    instances = tagged_instances(ec2)
    summary: dict[str, Any] = {"instances_listed": len(instances)}
    summary["orphan_instance"] = orphan_instances(conn, ec2, instances, terminate=terminate_orphans,
                                                  min_age_s=min_age_s, max_fixes=max_fixes, dry_run=dry_run)
    summary["desktop_lost"], again = lost_desktops(conn, jira, instances, reprovision=reprovision,
                                                   max_fixes=max_fixes, dry_run=dry_run)
    summary["orphan_broker_pool"] = orphan_pools(conn, broker, instances, max_fixes=max_fixes, dry_run=dry_run)
    summary["ticket_status"] = ticket_statuses(conn, jira, lookback_s=lookback_s, page_size=page_size,
                                               max_fixes=max_fixes, dry_run=dry_run)
    summary["seconds"] = round(time.monotonic() - started, 3)
    return summary, again

"""Lost webhooks: tickets in a status the bridge routes (the trigger status, *Removal Requested*) that no run
took up, because their webhook never arrived or was refused. Each becomes a delivery recorded as the bridge
records one (``vdi.store.deliveries.record``, the route its router picks), so the relay triggers it as it
triggers a webhook: one run, with a run id derived from a delivery id that depends on the ticket and its last
update only (a second reconcile records nothing new).

A ticket counts as lost when it was last updated between ``VDI_RECONCILE_LOOKBACK_S`` and
``VDI_RECONCILE_LOST_AFTER_S`` ago and no delivery routed to that DAG waits for it, and:

* for the provisioning DAG: it has no request, or its failed request would be taken over by a webhook's run
  (Jira's *Retry* whose webhook was lost; ``vdi.states.refusal``);
* for any other DAG (removal): its removal is neither in progress nor done (``desktop_removals``) and no
  delivery routed there was received after its last update (less the same margin).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg

from vdi.jira import JiraTicket
from vdi.reconcile import tally
from vdi.reconcile.inventory import jira_time, quoted
from vdi.states import DeliveryStatus, RequestState, Run, refusal
from vdi.store import deliveries
from vdi.store import reconcile as store
from webhook_bridge.events import UPDATED, Decision, Facts, Router, dag_run_id

KIND = "lost_webhook"
PROVISION_DAG = "vdi_provision"
DELIVERY_PREFIX = "reconcile-"


_ROUTING = ("BRIDGE_ROUTES", "BRIDGE_PROJECTS", "BRIDGE_ISSUE_TYPES")


def bridge_router(environ=None) -> Router:
    """The router the bridge builds from its settings (``BRIDGE_ROUTES``, ``BRIDGE_PROJECTS``,
    ``BRIDGE_ISSUE_TYPES``, the ``VDI_*`` statuses its default routes name); nothing else of the bridge's
    settings is read (no secrets)."""
    from webhook_bridge.settings import from_environment

    env = os.environ if environ is None else environ
    config = from_environment({k: v for k, v in env.items() if k in _ROUTING or k.startswith("VDI_")})
    return Router.from_config(config["ROUTES"], config["PROJECTS"], config["ISSUE_TYPES"])


def routed_statuses(router: Router) -> list[str]:
    """The statuses a move into which starts a run (the routes' ``moved_to`` and ``statuses``)."""
    return sorted({name for route in router.routes for name in (*route.moved_to, *route.statuses)})


def delivery_id_for(issue_key: str, status: str, updated: str) -> str:
    """The delivery id of the lost webhook of ``issue_key`` moved to ``status`` and last updated at ``updated``:
    the same for every reconcile run that finds this ticket so."""
    digest = hashlib.sha256(f"{issue_key}\n{status.casefold()}\n{updated}".encode()).hexdigest()[:24]
    return f"{DELIVERY_PREFIX}{issue_key}-{digest}"


def payload_for(issue: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """The delivery's body: an ``issue_updated`` webhook moving the issue into its current status, as Jira would
    have sent it (the fields the router and the DAGs read), marked as the reconcile's."""
    fields = issue.get("fields") or {}
    status = (fields.get("status") or {}).get("name")
    return {
        "timestamp": now_ms,
        "webhookEvent": UPDATED,
        "issue_event_type_name": "issue_generic",
        "issue": {"id": issue.get("id"), "key": issue["key"],
                  "fields": {"project": fields.get("project"), "issuetype": fields.get("issuetype"),
                             "status": fields.get("status"), "updated": fields.get("updated")}},
        "changelog": {"items": [{"field": "status", "fieldtype": "jira", "toString": status}]},
        "vdi_reconcile": {"reason": "no webhook for this status change reached the bridge"},
    }


def find_tickets(jira: JiraTicket, router: Router, *, lookback_s: float, lost_after_s: float,
                 page_size: int) -> list[dict[str, Any]]:
    """The tickets in a routed status updated in the window (JQL, paged)."""
    statuses = routed_statuses(router)
    if not statuses:
        return []
    clauses = [f"status in {quoted(statuses)}", f"updated >= -{max(1, int(lookback_s // 60))}m"]
    if lost_after_s >= 60:
        clauses.append(f"updated <= -{int(lost_after_s // 60)}m")
    if router.projects:
        clauses.insert(0, f"project in {quoted(sorted(router.projects))}")
    return jira.search(" AND ".join(clauses) + " ORDER BY updated ASC",
                       ["status", "project", "issuetype", "updated"], page_size=page_size)


def _lost(row: dict[str, Any], dag_id: str, status: str, trigger_status: str) -> bool:
    if row["pending"]:
        return False
    if dag_id != PROVISION_DAG:
        return row["removal_state"] not in ("in_progress", "removed") and not row["delivered"]
    if row["request_id"] is None:
        return True
    webhook_run = Run("reconcile-probe")
    return row["state"] == RequestState.FAILED and not refusal(row["issue_key"], row, webhook_run, status,
                                                                trigger_status)


def lost_tickets(conn: psycopg.Connection, router: Router, issues: Iterable[dict[str, Any]], *,
                 lost_after_s: float, trigger_status: str, now: datetime | None = None) -> list[dict[str, Any]]:
    """Of ``issues`` (search results), the lost ones, each with its ``decision`` (route) and ``delivery_id``."""
    now = now or datetime.now(timezone.utc)
    routed = []
    for issue in issues:
        fields = issue.get("fields") or {}
        payload = payload_for(issue, int(now.timestamp() * 1000))
        decision: Decision = router.decide(Facts.of(payload))
        updated = fields.get("updated")
        if decision.dag_id is None or not updated:
            continue
        if now - jira_time(updated) < timedelta(seconds=lost_after_s):
            continue  # JQL's minutes are coarse; the webhook may still be on its way
        routed.append((issue, decision, payload))
    rows = {row["issue_key"]: row for row in store.ticket_requests(
        conn, [(i["key"], d.dag_id, jira_time(i["fields"]["updated"])) for i, d, _ in routed], lost_after_s)}
    lost = []
    for issue, decision, payload in routed:
        status = issue["fields"]["status"]["name"]
        if _lost(rows[issue["key"]], decision.dag_id, status, trigger_status):
            lost.append({"issue": issue, "decision": decision, "payload": payload,
                         "delivery_id": delivery_id_for(issue["key"], status, issue["fields"]["updated"])})
    # A delivery recorded for this very ticket version already (by an earlier reconcile) is the deliveries'
    # part to re-dispatch or requeue: it is not lost again.
    recorded = store.existing_deliveries(conn, [item["delivery_id"] for item in lost])
    return [item for item in lost if item["delivery_id"] not in recorded]


def recover(conn: psycopg.Connection, lost: dict[str, Any]) -> str:
    """Record the lost ticket's delivery (pending, routed), as the bridge records a webhook; ``recorded``, or
    ``already recorded`` when a run before this one recorded it."""
    issue_key = lost["issue"]["key"]
    decision = lost["decision"]
    new = deliveries.record(conn, deliveries.NewDelivery(
        delivery_id=lost["delivery_id"], id_from_body=False, event=UPDATED, issue_key=issue_key,
        payload=lost["payload"], status=DeliveryStatus.PENDING, dag_id=decision.dag_id,
        dag_run_id=dag_run_id(issue_key, lost["delivery_id"]),
        note=f"{decision.note} (found by the reconcile: its webhook never arrived)"))
    return "recorded" if new else "already recorded"


def lost_webhooks(conn: psycopg.Connection, jira: JiraTicket, router: Router, *, lookback_s: float,
                  lost_after_s: float, trigger_status: str, page_size: int, max_fixes: int,
                  dry_run: bool) -> dict[str, Any]:
    """Find the lost tickets and record a delivery for each (at most ``max_fixes`` per run); the counts."""
    started = time.monotonic()
    issues = find_tickets(jira, router, lookback_s=lookback_s, lost_after_s=lost_after_s, page_size=page_size)
    lost = lost_tickets(conn, router, issues, lost_after_s=lost_after_s, trigger_status=trigger_status)
    by_key = {item["issue"]["key"]: item for item in lost}
    found = [store.Finding(key, key, {"status": item["issue"]["fields"]["status"]["name"],
                                      "dag_id": item["decision"].dag_id, "delivery_id": item["delivery_id"]})
             for key, item in by_key.items()]
    counts = tally.settle(conn, KIND, found, dry_run=dry_run, max_fixes=max_fixes,
                          fix=lambda finding: recover(conn, by_key[finding.subject]))
    return {"tickets_searched": len(issues), **counts, "seconds": round(time.monotonic() - started, 3)}

"""
### vdi_reconcile: what webhooks and runs missed, found and put right on a schedule

Runs every 15 minutes (`VDI_RECONCILE_SCHEDULE`), one run at a time, no catch-up. Trigger it by hand with
**dry_run** = true to see what it would do: a dry run changes nothing and records nothing. After a known outage
of the bridge, trigger it with **lost_after_s** = 0 to take up the tickets approved meanwhile at once.

`lost_webhooks` → `deliveries` → `trigger_deliveries` · `drift` → `reprovision` · `stuck` → `report`

* **lost_webhooks**: tickets in a status the bridge routes (*Approved*, *Removal Requested*) that no run took
  up become a delivery, as if their webhook had come: one run each, with a run id derived from the ticket.
* **deliveries**: pending deliveries the relay did not dispatch are dispatched again (by
  **trigger_deliveries** when no relay is running), failed ones requeued up to a cap, then dead-lettered; old
  ones pruned (`vdi.reconcile.deliveries`).
* **drift**: instances we tagged that no live request owns (reported; terminated with
  `VDI_RECONCILE_TERMINATE_ORPHANS`); ready desktops whose instance is gone or stopped (the request fails, the
  requester is told; provisioned again with `VDI_RECONCILE_REPROVISION`, by **reprovision**); broker pools
  VDI Studios made whose desktop is gone; tickets whose status disagrees with their request.
* **stuck**: requests in progress past `VDI_RECONCILE_STUCK_IN_PROGRESS_S` whose run is no longer running
  fail as their run would have failed them (ticket to *Failed*, a plain comment); others are reported.
* **report**: the summary (this task's XCom, the task log, the `reconcile_runs` table, `vdi.reconcile.*`
  metrics).

Everything it finds is reported once (`reconcile_findings`): a second run finds nothing new to do. Each kind
of fix is capped per run (`VDI_RECONCILE_MAX_FIXES`); the rest waits for the next run. Every task is bounded
(`VDI_TASK_TIMEOUT_S`) and safe to rerun.

Logic lives in `plugins/vdi/reconcile/`; this file only wires it.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, get_current_context, task
from vdi.callbacks import ACTIVE_RUN_STATES
from vdi.dag_defaults import JIRA_POOL, task_defaults
from vdi.settings import load

PROVISION_DAG = "vdi_provision"
_SETTINGS = load()  # read once at parse: the schedule and the bounds; each task reads its own settings when it runs


def _dry_run() -> bool:
    return bool(get_current_context()["params"].get("dry_run"))


@dag(
    dag_id="vdi_reconcile",
    schedule=_SETTINGS.reconcile_schedule,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(seconds=4 * _SETTINGS.task_timeout_s),
    doc_md=__doc__,
    tags=["vdi", "reconcile"],
    default_args=task_defaults(_SETTINGS),
    params={
        "dry_run": Param(False, type="boolean", description="Report what would be done; change nothing"),
        "lost_after_s": Param(None, type=["null", "number"], minimum=0,
                              description="Count a ticket as lost after this many seconds instead of "
                                          "VDI_RECONCILE_LOST_AFTER_S (0 right after a known outage of the bridge)"),
    },
)
def vdi_reconcile():
    @task(task_id="deliveries", trigger_rule="all_done")  # runs even when Jira (lost_webhooks) is down
    def deliveries() -> list[dict]:
        """The counts go to the XCom ``summary``; the return value is the runs ``trigger_deliveries`` triggers
        (only when no relay is running)."""
        from vdi import provision
        from vdi.reconcile.deliveries import reconcile_deliveries

        with provision.database() as conn:
            result = reconcile_deliveries(conn, dry_run=_dry_run())
        triggers = result.pop("triggers", [])
        get_current_context()["ti"].xcom_push(key="summary", value=result)
        return triggers

    @task(task_id="lost_webhooks", pool=JIRA_POOL)
    def lost_webhooks() -> dict:
        from vdi import provision
        from vdi.jira import JiraTicket
        from vdi.reconcile.lost_webhooks import bridge_router, lost_webhooks

        settings = load()
        lost_after_s = get_current_context()["params"].get("lost_after_s")
        with provision.database() as conn:
            return lost_webhooks(conn, JiraTicket.from_connection(), bridge_router(),
                                 lookback_s=settings.reconcile_lookback_s,
                                 lost_after_s=settings.reconcile_lost_after_s if lost_after_s is None else lost_after_s,
                                 trigger_status=settings.jira_trigger_status, page_size=settings.reconcile_jql_page,
                                 max_fixes=settings.reconcile_max_fixes, dry_run=_dry_run())

    @task(task_id="drift")
    def drift() -> list[dict]:
        """The drift counts go to the XCom ``summary``; the return value is the runs ``reprovision`` triggers."""
        from vdi import provision
        from vdi.ec2 import aws_client
        from vdi.jira import JiraTicket
        from vdi.leostream import broker_session
        from vdi.reconcile.drift import drift

        settings = load()
        with provision.database() as conn, broker_session() as broker:
            summary, again = drift(conn, aws_client("ec2"), broker, JiraTicket.from_connection(),
                                   terminate_orphans=settings.reconcile_terminate_orphans,
                                   reprovision=settings.reconcile_reprovision,
                                   min_age_s=settings.reconcile_lost_after_s,
                                   lookback_s=settings.reconcile_lookback_s, page_size=settings.reconcile_jql_page,
                                   max_fixes=settings.reconcile_max_fixes, dry_run=_dry_run())
        # One manual run of vdi_provision per lost desktop; its run id names the instance that was lost.
        get_current_context()["ti"].xcom_push(key="summary", value=summary)
        return [{"trigger_run_id": f"{item['issue_key']}__reconcile__{item['instance_id']}",
                 "conf": {"issue_key": item["issue_key"]}} for item in again]

    @task(task_id="stuck")
    def stuck() -> dict:
        from vdi import provision
        from vdi.catalog import load_catalog
        from vdi.ec2 import aws_client
        from vdi.jira import JiraTicket
        from vdi.reconcile.stuck import stuck

        ti = get_current_context()["ti"]

        def is_running(run_id: str) -> bool:
            return ti.get_dr_count(dag_id=PROVISION_DAG, run_ids=[run_id], states=ACTIVE_RUN_STATES) > 0

        settings = load()
        with provision.database() as conn:
            return stuck(conn, JiraTicket.from_connection(), aws_client("ec2"), load_catalog(), is_running,
                         in_progress_s=settings.reconcile_stuck_in_progress_s,
                         removing_s=settings.reconcile_stuck_removing_s, max_fixes=settings.reconcile_max_fixes,
                         dry_run=_dry_run())

    @task(task_id="report", trigger_rule="all_done")
    def report() -> dict:
        from airflow.sdk.exceptions import AirflowException
        from vdi import provision
        from vdi.reconcile.report import publish, summary

        context = get_current_context()
        ti = context["ti"]
        parts = {name: ti.xcom_pull(task_ids=name) for name in ("lost_webhooks", "stuck")}
        parts.update({name: ti.xcom_pull(task_ids=name, key="summary") for name in ("deliveries", "drift")})
        result = summary(context["run_id"], _dry_run(), parts)
        with provision.database() as conn:
            result = publish(conn, result)
        if result["failed_parts"]:
            ti.xcom_push(key="return_value", value=result)
            raise AirflowException(f"reconcile parts failed: {', '.join(result['failed_parts'])} (see their logs)")
        return result

    # A lost webhook's delivery, recorded first, is among the pending ones the deliveries part hands out.
    lost = lost_webhooks()
    handed_out = deliveries()
    lost >> handed_out
    trigger_deliveries = TriggerDagRunOperator.partial(
        task_id="trigger_deliveries", logical_date=None, skip_when_already_exists=True,
        openlineage_inject_parent_info=False,
    ).expand_kwargs(handed_out)
    found = drift()
    reprovision = TriggerDagRunOperator.partial(
        task_id="reprovision", trigger_dag_id=PROVISION_DAG, logical_date=None, skip_when_already_exists=True,
        openlineage_inject_parent_info=False,
        note="Provisioned again by vdi_reconcile: the desktop's instance was lost",
    ).expand_kwargs(found)
    [lost, handed_out, trigger_deliveries, found, reprovision, stuck()] >> report()


vdi_reconcile()

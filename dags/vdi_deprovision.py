"""
### vdi_deprovision: from a Desktop Removal ticket to a desktop taken down

One run per webhook delivery (the bridge triggers it with `conf = {"delivery_id", "issue_key", "event"}` for a
*Desktop Removal* ticket created in, or moved back into, *Removal Requested*), or a manual run from the UI with
the **issue_key** param of the removal ticket.

`claim` → `resolve` → `remove_from_broker` → `stop_instances` → `terminate_instances` → `finish`

* What it removes: the *Desktop Request* tickets the removal ticket links to (any link type, made on the create
  screen or afterwards); with no such link, every live desktop (in progress, ready or failed) of the ticket's
  *Desktop User*.
* The ticket is read fresh from Jira; one not in *Removal Requested* (`VDI_JIRA_REMOVAL_STATUS`) is left alone.
  Only the run that owns the removal moves it on, as for provisioning; a desktop being removed is left alone by
  provisioning and by any other removal.
* From the broker it removes only what VDI Studios made for the desktop: its pool's assignment in the user's
  policy and the pool (named `vdi-<issue key>`, with VDI Studios' notes). The user and their policy stay.
* Each instance is stopped, then terminated; a bundle with `snapshot_on_removal` in the catalog keeps a
  snapshot of the root volume, taken once the instance is stopped.
* `finish` records each desktop `removed` (with what was done, in the event log), comments on each request
  ticket and on the removal ticket (once: comment markers), and moves the removal ticket to *Removed*. A
  request that never got a desktop, failed halfway or was removed already is a clean finish.
* After the last retry of a task, the owning run records the removal `failed`, moves the ticket to *Failed* and
  comments in plain words; **Retry Removal** (Failed → Removal Requested) starts it again, and the new run takes
  over the desktops the failed one held. A manual run with the **issue_key** resumes a failed removal too.
* Every step is safe to rerun; every try is bounded (`VDI_TASK_TIMEOUT_S`; the wait for the instances to stop
  by `VDI_WAIT_TIMEOUT_S`, holding no worker slot).

Logic lives in `plugins/vdi/deprovision.py`; this file only wires it.
"""

from __future__ import annotations

from typing import Any

import pendulum

from airflow.sdk import Param, dag, task
from vdi.callbacks import current_run, issue_key_param, task_outcome
from vdi.dag_defaults import AWS_POOL, JIRA_POOL, LEOSTREAM_POOL, sensor_settings, task_defaults
from vdi.request import ISSUE_KEY_PATTERN, JiraFieldConfig
from vdi.settings import load
from vdi.steps import RemovalStep


def on_task_failure(context: dict[str, Any]) -> None:
    from vdi.deprovision import on_task_failure as record

    record(context)


@dag(
    dag_id="vdi_deprovision",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["vdi", "deprovisioning"],
    max_active_runs=16,
    default_args={**task_defaults(), "on_failure_callback": on_task_failure},
    params={
        "issue_key": Param(None, type=["null", "string"], pattern=ISSUE_KEY_PATTERN,
                           description="Jira issue key of the Desktop Removal ticket, e.g. VDI-123"),
        "delivery_id": Param(None, type=["null", "string"], description="Set by the webhook bridge"),
        "event": Param(None, type=["null", "string"], description="Set by the webhook bridge"),
    },
)
def vdi_deprovision():
    @task.short_circuit(task_id=RemovalStep.CLAIM.value, pool=JIRA_POOL)
    def claim() -> dict | None:
        from vdi import deprovision
        from vdi.jira import JiraTicket
        from vdi.provision import database

        with database() as conn:
            return deprovision.claim(conn, JiraTicket.from_connection(), issue_key_param(), current_run(),
                                     load().jira_removal_status)

    @task(task_id=RemovalStep.RESOLVE.value, pool=JIRA_POOL)
    def resolve(removal: dict) -> list[str]:
        from vdi import deprovision
        from vdi.jira import JiraTicket
        from vdi.provision import database

        with task_outcome(), database() as conn:
            return deprovision.resolve(conn, JiraTicket.from_connection(), removal, current_run(),
                                       JiraFieldConfig.from_env(), load().jira_request_type)

    @task(task_id=RemovalStep.REMOVE_FROM_BROKER.value, pool=LEOSTREAM_POOL)
    def remove_from_broker(removal: dict) -> dict:
        from vdi import deprovision
        from vdi.leostream import broker_session
        from vdi.provision import database

        with task_outcome(), database() as conn, broker_session() as broker:
            return deprovision.remove_from_broker(conn, broker, removal, current_run())

    @task.sensor(task_id=RemovalStep.STOP_INSTANCES.value, pool=AWS_POOL, **sensor_settings())
    def stop_instances(removal: dict) -> bool:
        from vdi import deprovision
        from vdi.catalog import load_catalog
        from vdi.ec2 import aws_client
        from vdi.provision import database

        with task_outcome(), database() as conn:
            return deprovision.instances_stopped(conn, aws_client("ec2"), removal, current_run(), load_catalog())

    @task(task_id=RemovalStep.TERMINATE_INSTANCES.value, pool=AWS_POOL)
    def terminate_instances(removal: dict) -> dict:
        from vdi import deprovision
        from vdi.catalog import load_catalog
        from vdi.ec2 import aws_client
        from vdi.provision import database

        with task_outcome(), database() as conn:
            return deprovision.terminate_instances(conn, aws_client("ec2"), removal, current_run(), load_catalog())

    @task(task_id=RemovalStep.FINISH.value, pool=JIRA_POOL)
    def finish(removal: dict) -> None:
        from vdi import deprovision
        from vdi.jira import JiraTicket
        from vdi.provision import database

        with task_outcome(), database() as conn:
            deprovision.finish(conn, JiraTicket.from_connection(), removal, current_run())

    removal = claim()
    (resolve(removal) >> remove_from_broker(removal) >> stop_instances(removal) >> terminate_instances(removal)
     >> finish(removal))


vdi_deprovision()

"""
### vdi_provision: from an approved Jira ticket to a ready Leostream desktop

One run per webhook delivery (the bridge triggers it with `conf = {"delivery_id", "issue_key", "event"}`),
or a manual run from the UI with the **issue_key** param (and **force**, see below).

`validate` → `persist` → `jira_in_progress` → `launch_instance` → `wait_instance_running` (then its first
boot: `wait_bootstrap`) → `register_desktop` → `wait_desktop_in_pool` (then its agent: `wait_agent_running`)
→ `jira_ready`. `dedupe` runs in `persist`'s task; each wait's second step in its first's (one task process
less each); the event log and failure comments name them as steps of their own.

* The ticket is read fresh from Jira; one not in the trigger status (default *Approved*) is left alone.
* One desktop per ticket: a ticket already in progress or ready makes the run a no-op.
* *Ready* means it works: the desktop's first boot tagged its instance `vdi:bootstrap=done` (a `failed` tag,
  or no tag within `VDI_BOOTSTRAP_TIMEOUT_S` of the launch, fails the run) and the broker counts the
  desktop's Leostream agent running in its pool.
* A failed request is provisioned again by Jira's **Retry** (Failed → Approved, through the webhook), by
  clearing the failed task of its run, or by a manual run with its **issue_key** (whatever the ticket's
  status). What exists is reused: a stopped instance is started, a terminated or lost one relaunched under a
  new launch generation (the ClientToken changes with it), one whose first boot failed is replaced.
* A request stuck *in progress* whose run is no longer running (marked failed or success in the UI, or
  deleted): trigger a manual run with its **issue_key** and **force** = true to take it over.
* Only the run that owns the request moves it on; a run that does not (a stray delivery, a run whose
  request was taken over) skips its remaining steps and changes nothing.
* Requests outside the catalog's guardrails get a Jira comment and the state `rejected`; no AWS call.
* Every step is safe to rerun: clear a failed task to resume from there, or clear the whole run; nothing
  happens twice (tagged instance lookup + ClientToken, broker look-ups before creates, comment markers,
  status read before each transition).
* Every try is bounded (`VDI_TASK_TIMEOUT_S`; each wait by `VDI_WAIT_TIMEOUT_S`). A wait's task hands the
  waiting to Airflow's triggerer, which checks every `VDI_POKE_INTERVAL_S` and ends the task: no worker slot, no
  process. A failure in a wait's second phase is reported at that phase's step (e.g. `wait_bootstrap`).
* After the last retry a task of the owning run records the state `failed` at that step, disposes of the
  instance as the catalog says (terminate, stop or keep), moves the ticket to *Failed* and comments in
  plain words what happened and what to do; the full cause is in the event log and the task log.

Logic lives in `plugins/vdi/provision.py`; this file only wires it.
"""

from __future__ import annotations

import pendulum

from airflow.sdk import Param, dag, task
from vdi.callbacks import current_run, issue_key_param, on_task_failure, task_outcome
from vdi.dag_defaults import (AWS_POOL, JIRA_POOL, LEOSTREAM_POOL, MAX_ACTIVE_PROVISION_RUNS, task_defaults,
                              wait_settings)
from vdi.request import ISSUE_KEY_PATTERN, DesktopRequest, JiraFieldConfig
from vdi.settings import load
from vdi.steps import Step
from vdi.waits import StepWait


@dag(
    dag_id="vdi_provision",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["vdi", "provisioning"],
    max_active_runs=MAX_ACTIVE_PROVISION_RUNS,
    default_args={**task_defaults(), "on_failure_callback": on_task_failure},
    params={
        "issue_key": Param(None, type=["null", "string"], pattern=ISSUE_KEY_PATTERN,
                           description="Jira issue key of the desktop request, e.g. VDI-123"),
        "force": Param(False, type="boolean",
                       description="Take over a request stuck in progress under a run that is no longer running"),
        "delivery_id": Param(None, type=["null", "string"], description="Set by the webhook bridge"),
        "event": Param(None, type=["null", "string"], description="Set by the webhook bridge"),
    },
)
def vdi_provision():
    @task.short_circuit(task_id=Step.VALIDATE.value, pool=JIRA_POOL)
    def validate() -> dict | None:
        from vdi import provision
        from vdi.jira import JiraTicket

        with provision.database() as conn:
            return provision.validate(JiraTicket.from_connection(), issue_key_param(), JiraFieldConfig.from_env(), conn,
                                      current_run())

    @task.short_circuit(task_id=Step.PERSIST.value, pool=JIRA_POOL)
    def persist(request: dict) -> bool:
        from vdi import provision
        from vdi.catalog import load_catalog
        from vdi.jira import JiraTicket

        with provision.database() as conn:
            return provision.persist(conn, JiraTicket.from_connection(), DesktopRequest.model_validate(request),
                                     current_run(), load_catalog(), load().jira_trigger_status)

    @task(task_id=Step.JIRA_IN_PROGRESS.value, pool=JIRA_POOL)
    def jira_in_progress(request: dict) -> None:
        from vdi import provision
        from vdi.catalog import load_catalog
        from vdi.jira import JiraTicket

        desktop = DesktopRequest.model_validate(request)
        with task_outcome(), provision.database() as conn:
            provision.mark_in_progress(conn, JiraTicket.from_connection(), desktop, current_run(),
                                       load_catalog().resolve_os(desktop))

    @task(task_id=Step.LAUNCH_INSTANCE.value, pool=AWS_POOL)
    def launch_instance(request: dict) -> str:
        from vdi import provision
        from vdi.catalog import load_catalog
        from vdi.ec2 import aws_client
        from vdi.leostream import LeostreamHook
        from vdi.userdata import desktop_user_data

        catalog = load_catalog()
        desktop = DesktopRequest.model_validate(request)
        os_family = catalog.resolve_os(desktop)
        user_data = desktop_user_data(desktop, os_family, broker_address=LeostreamHook().broker_address(),
                                      region=catalog.region, playbook_bucket=load().playbook_bucket,
                                      display_protocol=catalog.bundles[desktop.bundle].leostream.display_protocol)
        with task_outcome(), provision.database() as conn:
            return provision.launch(conn, aws_client("ec2"), desktop, current_run(), catalog, os_family, user_data,
                                    load().bootstrap_timeout_s)

    @task(task_id=Step.REGISTER_DESKTOP.value, pool=LEOSTREAM_POOL)
    def register_desktop(request: dict, instance_id: str) -> dict:
        from vdi import provision
        from vdi.catalog import load_catalog
        from vdi.leostream import broker_session

        with task_outcome(), provision.database() as conn, broker_session() as broker:
            return provision.register(conn, broker, DesktopRequest.model_validate(request), current_run(),
                                      load_catalog(), instance_id)

    @task(task_id=Step.JIRA_READY.value, pool=JIRA_POOL)
    def jira_ready(request: dict, registration: dict, instance_id: str) -> None:
        from vdi import provision
        from vdi.jira import JiraTicket
        from vdi.leostream import LeostreamHook

        with task_outcome(), provision.database() as conn:
            provision.finish_ready(conn, JiraTicket.from_connection(), DesktopRequest.model_validate(request),
                                   current_run(), registration, LeostreamHook().broker_address(), instance_id)

    request = validate()
    in_progress = jira_in_progress(request)
    persist(request) >> in_progress
    instance_id = launch_instance(request)
    in_progress >> instance_id
    registration = register_desktop(request, instance_id)
    waits = wait_settings()
    StepWait(step=Step.WAIT_INSTANCE_RUNNING, pool=AWS_POOL, request=request, instance_id=instance_id,
             **waits) >> registration
    (StepWait(step=Step.WAIT_DESKTOP_IN_POOL, pool=LEOSTREAM_POOL, request=request, registration=registration,
              check_first=True, **waits)
     >> jira_ready(request, registration, instance_id))


vdi_provision()

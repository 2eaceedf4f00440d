"""
### vdi_provision: from an approved Jira ticket to a ready Leostream desktop

One run per webhook delivery (the bridge triggers it with `conf = {"delivery_id", "issue_key", "event"}`),
or a manual run from the UI with the **issue_key** param.

`validate` → `dedupe` → `persist` → `jira_in_progress` → `launch_instance` → `wait_instance_running`
→ `register_desktop` → `wait_desktop_in_pool` → `jira_ready`

* The ticket is read fresh from Jira; one not in the trigger status (default *Approved*) is left alone.
* One desktop per ticket: a ticket already in progress or ready makes the run a no-op.
* A failed request is resumed by clearing the failed task of its run, or by a manual run with its
  **issue_key** (whatever the ticket's status); never by another webhook delivery.
* Requests outside the catalog's guardrails get a Jira comment and the state `rejected`; no AWS call.
* Every step is safe to rerun: clear a failed task to resume from there, or clear the whole run; nothing
  happens twice (tagged instance lookup + ClientToken, broker look-ups before creates, comment markers,
  status read before each transition).
* After the last retry a task of the run that owns the request posts a readable comment, moves the ticket
  to *Failed* and records the state `failed` at that step.

Logic lives in `plugins/vdi/provision.py`; this file only wires it.
"""

from __future__ import annotations

import pendulum

from airflow.sdk import Param, dag, get_current_context, task
from vdi.callbacks import on_task_failure
from vdi.dag_defaults import AWS_POOL, JIRA_POOL, LEOSTREAM_POOL, sensor_settings, task_defaults
from vdi.request import ISSUE_KEY_PATTERN, DesktopRequest, JiraFieldConfig
from vdi.settings import load
from vdi.states import Run
from vdi.steps import Step


def _issue_key() -> str:
    """The run's ``issue_key`` param (Airflow merges the run's conf into its params)."""
    issue_key = get_current_context()["params"].get("issue_key")
    if not issue_key:
        raise ValueError('no issue key: trigger with conf {"issue_key": "VDI-123"}')
    return issue_key


def _run() -> Run:
    """This run, and whether a person started it (no webhook delivery behind it)."""
    context = get_current_context()
    return Run(context["run_id"], manual=not context["params"].get("delivery_id"))


@dag(
    dag_id="vdi_provision",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["vdi", "provisioning"],
    max_active_runs=16,
    default_args={**task_defaults(), "on_failure_callback": on_task_failure},
    params={
        "issue_key": Param(None, type=["null", "string"], pattern=ISSUE_KEY_PATTERN,
                           description="Jira issue key of the desktop request, e.g. VDI-123"),
        "delivery_id": Param(None, type=["null", "string"], description="Set by the webhook bridge"),
        "event": Param(None, type=["null", "string"], description="Set by the webhook bridge"),
    },
)
def vdi_provision():
    @task.short_circuit(task_id=Step.VALIDATE.value, pool=JIRA_POOL)
    def validate() -> dict | None:
        from vdi import provision
        from vdi.jira import JiraTicket
        from vdi.store.db import connect

        with connect(autocommit=True) as conn:
            return provision.validate(JiraTicket.from_connection(), _issue_key(), JiraFieldConfig.from_env(), conn,
                                      _run())

    @task.short_circuit(task_id=Step.DEDUPE.value)
    def dedupe(request: dict) -> bool:
        from vdi import provision
        from vdi.store.db import connect

        with connect(autocommit=True) as conn:
            return provision.dedupe(conn, DesktopRequest.model_validate(request), _run(),
                                    load().jira_trigger_status)

    @task.short_circuit(task_id=Step.PERSIST.value, pool=JIRA_POOL)
    def persist(request: dict) -> bool:
        from vdi import provision
        from vdi.catalog import load_catalog
        from vdi.jira import JiraTicket
        from vdi.store.db import connect

        with connect(autocommit=True) as conn:
            return provision.persist(conn, JiraTicket.from_connection(), DesktopRequest.model_validate(request),
                                     _run(), load_catalog(), load().jira_trigger_status)

    @task(task_id=Step.JIRA_IN_PROGRESS.value, pool=JIRA_POOL)
    def jira_in_progress(request: dict) -> None:
        from vdi import provision
        from vdi.catalog import load_catalog
        from vdi.jira import JiraTicket
        from vdi.store.db import connect

        desktop = DesktopRequest.model_validate(request)
        with connect(autocommit=True) as conn:
            provision.mark_in_progress(conn, JiraTicket.from_connection(), desktop,
                                       load_catalog().resolve_os(desktop))

    @task(task_id=Step.LAUNCH_INSTANCE.value, pool=AWS_POOL)
    def launch_instance(request: dict) -> str:
        from vdi import provision
        from vdi.catalog import load_catalog
        from vdi.ec2 import aws_client
        from vdi.leostream import LeostreamHook
        from vdi.store.db import connect
        from vdi.userdata import desktop_user_data

        catalog = load_catalog()
        desktop = DesktopRequest.model_validate(request)
        os_family = catalog.resolve_os(desktop)
        user_data = desktop_user_data(desktop, os_family, broker_address=LeostreamHook().broker_address(),
                                      region=catalog.region, playbook_bucket=load().playbook_bucket)
        with connect(autocommit=True) as conn:
            return provision.launch(conn, aws_client("ec2"), desktop, catalog, os_family, user_data)

    @task.sensor(task_id=Step.WAIT_INSTANCE_RUNNING.value, pool=AWS_POOL, **sensor_settings())
    def wait_instance_running(instance_id: str) -> bool:
        from vdi import provision
        from vdi.ec2 import aws_client

        return provision.instance_ready(aws_client("ec2"), instance_id)

    @task(task_id=Step.REGISTER_DESKTOP.value, pool=LEOSTREAM_POOL)
    def register_desktop(request: dict, instance_id: str) -> dict:
        from vdi import provision
        from vdi.catalog import load_catalog
        from vdi.leostream import broker_session
        from vdi.store.db import connect

        with connect(autocommit=True) as conn, broker_session() as broker:
            return provision.register(conn, broker, DesktopRequest.model_validate(request), load_catalog(),
                                      instance_id)

    @task.sensor(task_id=Step.WAIT_DESKTOP_IN_POOL.value, pool=LEOSTREAM_POOL, **sensor_settings())
    def wait_desktop_in_pool(request: dict, registration: dict) -> bool:
        from vdi import provision
        from vdi.leostream import broker_session

        with broker_session() as broker:
            return provision.desktop_discovered(broker, DesktopRequest.model_validate(request), registration)

    @task(task_id=Step.JIRA_READY.value, pool=JIRA_POOL)
    def jira_ready(request: dict, registration: dict, instance_id: str) -> None:
        from vdi import provision
        from vdi.jira import JiraTicket
        from vdi.leostream import LeostreamHook
        from vdi.store.db import connect

        with connect(autocommit=True) as conn:
            provision.finish_ready(conn, JiraTicket.from_connection(), DesktopRequest.model_validate(request),
                                   registration, LeostreamHook().broker_address(), instance_id)

    request = validate()
    in_progress = jira_in_progress(request)
    dedupe(request) >> persist(request) >> in_progress
    instance_id = launch_instance(request)
    in_progress >> instance_id
    registration = register_desktop(request, instance_id)
    wait_instance_running(instance_id) >> registration
    wait_desktop_in_pool(request, registration) >> jira_ready(request, registration, instance_id)


vdi_provision()

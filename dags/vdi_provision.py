"""
### vdi_provision: from an approved Jira ticket to a ready Leostream desktop

One run per webhook delivery (the bridge triggers it with `conf = {"delivery_id", "issue_key", "event"}`),
or a manual run from the UI with the **issue_key** param.

`validate` → `dedupe` → `persist` → `jira_in_progress` → `launch_instance` → `wait_instance_running`
→ `register_desktop` → `wait_desktop_in_pool` → `jira_ready`

* The ticket is read fresh from Jira; one not in the trigger status (default *Approved*) is left alone.
* One desktop per ticket: a ticket already in progress or ready makes the run a no-op.
* Requests outside the catalog's guardrails get a Jira comment and the state `rejected`; no AWS call.
* Every step is safe to rerun: clear a failed task to resume from there, or clear the whole run; nothing
  happens twice (tagged instance lookup + ClientToken, broker look-ups before creates, comment markers,
  status read before each transition).
* After the last retry a task posts a readable comment, moves the ticket to *Failed* and records the
  state `failed` at that step.

Logic lives in `plugins/vdi/provision.py`; this file only wires it.
"""

from __future__ import annotations

import pendulum

from airflow.sdk import Param, dag, get_current_context, task
from vdi.clients import AWS_POOL, JIRA_POOL, LEOSTREAM_POOL, sensor_settings, task_defaults
from vdi.callbacks import on_task_failure
from vdi.request import ISSUE_KEY_PATTERN


def _issue_key() -> str:
    context = get_current_context()
    issue_key = context["params"].get("issue_key") or (context["dag_run"].conf or {}).get("issue_key")
    if not issue_key:
        raise ValueError('no issue key: trigger with conf {"issue_key": "VDI-123"}')
    return issue_key


def _run() -> tuple[str, bool]:
    """This run's id, and whether a person started it (no webhook delivery behind it)."""
    context = get_current_context()
    conf = context["dag_run"].conf or {}
    return context["run_id"], not (context["params"].get("delivery_id") or conf.get("delivery_id"))


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
    @task.short_circuit(pool=JIRA_POOL)
    def validate() -> dict | None:
        from vdi import clients, provision
        from vdi.request import JiraFieldConfig

        with clients.database() as conn:
            return provision.validate(clients.jira(), _issue_key(), JiraFieldConfig.from_env(), conn,
                                      get_current_context()["run_id"])

    @task.short_circuit
    def dedupe(request: dict) -> bool:
        from vdi import clients, provision

        with clients.database() as conn:
            return provision.dedupe(conn, provision.request_from(request), *_run())

    @task.short_circuit(pool=JIRA_POOL)
    def persist(request: dict) -> bool:
        from vdi import clients, provision
        from vdi.catalog import load_catalog

        with clients.database() as conn:
            run_id, manual = _run()
            return provision.persist(conn, clients.jira(), provision.request_from(request), run_id,
                                     load_catalog(), manual)

    @task(pool=JIRA_POOL)
    def jira_in_progress(request: dict) -> None:
        from vdi import clients, provision
        from vdi.catalog import load_catalog

        desktop = provision.request_from(request)
        with clients.database() as conn:
            provision.mark_in_progress(conn, clients.jira(), desktop, load_catalog().resolve_os(desktop))

    @task(pool=AWS_POOL)
    def launch_instance(request: dict) -> str:
        from vdi import clients, provision
        from vdi.catalog import load_catalog

        catalog = load_catalog()
        desktop = provision.request_from(request)
        with clients.database() as conn:
            return provision.launch(conn, clients.ec2(), desktop, catalog, catalog.resolve_os(desktop),
                                    clients.user_data)

    @task.sensor(pool=AWS_POOL, **sensor_settings())
    def wait_instance_running(instance_id: str) -> bool:
        from vdi import clients, provision

        return provision.instance_ready(clients.ec2(), instance_id)

    @task(pool=LEOSTREAM_POOL)
    def register_desktop(request: dict, instance_id: str) -> dict:
        from vdi import clients, provision
        from vdi.catalog import load_catalog

        with clients.database() as conn, clients.leostream() as broker:
            return provision.register(conn, broker, provision.request_from(request), load_catalog(), instance_id)

    @task.sensor(pool=LEOSTREAM_POOL, **sensor_settings())
    def wait_desktop_in_pool(request: dict, registration: dict) -> bool:
        from vdi import clients, provision

        with clients.leostream() as broker:
            return provision.desktop_discovered(broker, provision.request_from(request), registration)

    @task(pool=JIRA_POOL)
    def jira_ready(request: dict, registration: dict, instance_id: str) -> None:
        from vdi import clients, provision

        with clients.database() as conn:
            provision.finish_ready(conn, clients.jira(), provision.request_from(request), registration,
                                   provision.broker_address(clients.leostream_url()), instance_id)

    request = validate()
    in_progress = jira_in_progress(request)
    dedupe(request) >> persist(request) >> in_progress
    instance_id = launch_instance(request)
    in_progress >> instance_id
    registration = register_desktop(request, instance_id)
    wait_instance_running(instance_id) >> registration
    wait_desktop_in_pool(request, registration) >> jira_ready(request, registration, instance_id)


vdi_provision()

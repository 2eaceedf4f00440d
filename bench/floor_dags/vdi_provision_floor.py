"""
### vdi_provision_floor: Airflow's own floor for the burst benchmark (``bench/burst.py``), not a product DAG

The shape of `vdi_provision` (same task ids, dependencies, pools, priorities and short-circuits; each wait a
task that finds nothing to wait for) with tasks that do nothing: what Airflow itself costs this machine per run.
The benchmark links this file into a dags folder of its own beside the product's DAGs; it is never in `dags/`.
"""

from __future__ import annotations

import pendulum

from airflow.sdk import dag, task
from vdi.dag_defaults import AWS_POOL, JIRA_POOL, LEOSTREAM_POOL, MAX_ACTIVE_PROVISION_RUNS, WEIGHT_RULE
from vdi.steps import Step

FLOOR_DAG_ID = "vdi_provision_floor"


def noop(step: Step, pool: str = "default_pool", short_circuit: bool = False):
    """A task of ``step``'s id that does nothing (a short-circuit that lets the run go on)."""
    decorator = task.short_circuit if short_circuit else task
    return decorator(task_id=step.value, pool=pool)(lambda *_: True)


@dag(dag_id=FLOOR_DAG_ID, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     doc_md=__doc__, tags=["bench"], max_active_runs=MAX_ACTIVE_PROVISION_RUNS,
     default_args={"retries": 0, "weight_rule": WEIGHT_RULE})
def vdi_provision_floor():
    request = noop(Step.VALIDATE, JIRA_POOL, short_circuit=True)()
    in_progress = noop(Step.JIRA_IN_PROGRESS, JIRA_POOL)(request)
    noop(Step.PERSIST, JIRA_POOL, True)(request) >> in_progress
    instance_id = noop(Step.LAUNCH_INSTANCE, AWS_POOL)(request)
    in_progress >> instance_id
    registration = noop(Step.REGISTER_DESKTOP, LEOSTREAM_POOL)(request, instance_id)
    noop(Step.WAIT_INSTANCE_RUNNING, AWS_POOL)(request, instance_id) >> registration
    (noop(Step.WAIT_DESKTOP_IN_POOL, LEOSTREAM_POOL)(request, registration)
     >> noop(Step.JIRA_READY, JIRA_POOL)(request, registration, instance_id))


vdi_provision_floor()

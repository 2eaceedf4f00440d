"""What the VDI DAGs' tasks share: ``default_args``, sensor and wait timing, and the Airflow pools that bound the
calls to each external system (declared in ``include/airflow_pools.json``, created by ``make run``). Cheap at DAG
parse."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from vdi.settings import VdiSettings, load

JIRA_POOL = "jira_api"
LEOSTREAM_POOL = "leostream_api"
AWS_POOL = "aws_api"

MAX_RETRY_DELAY = timedelta(minutes=10)
# A task's priority grows with the tasks upstream of it, so a slot goes to the run furthest along: a burst of
# requests finishes one after another instead of all at the end (Airflow's default, "downstream", starts every
# run's first task before any run's second). bench/RESULTS.md measures it.
WEIGHT_RULE = "upstream"
# Runs of vdi_provision at once. A run waiting on its desktop holds no worker or pool slot (its waits are
# deferred), so this bounds how many requests may wait at once, not the load: the executor's slots and the
# pools bound that. 16 made a burst wait for its first boots in waves of 16 (bench/RESULTS.md).
MAX_ACTIVE_PROVISION_RUNS = 128


def task_defaults(settings: VdiSettings | None = None) -> dict[str, Any]:
    """``default_args``: retries with exponential backoff (``VDI_TASK_RETRIES``, ``VDI_RETRY_DELAY_S``), an
    ``execution_timeout`` on every try (``VDI_TASK_TIMEOUT_S``; for a sensor, on each poke), and ``WEIGHT_RULE``."""
    settings = settings or load()
    return {
        "owner": "platform",
        "retries": settings.task_retries,
        "retry_delay": timedelta(seconds=settings.retry_delay_s),
        "retry_exponential_backoff": True,
        "max_retry_delay": MAX_RETRY_DELAY,
        "execution_timeout": timedelta(seconds=settings.task_timeout_s),
        "weight_rule": WEIGHT_RULE,
    }


def sensor_settings(settings: VdiSettings | None = None) -> dict[str, Any]:
    """Sensors reschedule (no worker slot held while waiting) and give up after ``timeout`` in all:
    ``VDI_POKE_INTERVAL_S``, ``VDI_WAIT_TIMEOUT_S``."""
    settings = settings or load()
    return {"mode": "reschedule", "poke_interval": settings.poke_interval_s, "timeout": settings.wait_timeout_s}


def wait_settings(settings: VdiSettings | None = None) -> dict[str, Any]:
    """Timing of the deferred waits (``vdi.waits.StepWait``): checked every ``VDI_POKE_INTERVAL_S`` in the
    triggerer, given up after ``VDI_WAIT_TIMEOUT_S`` in all."""
    settings = settings or load()
    return {"poke_interval_s": settings.poke_interval_s, "wait_timeout_s": settings.wait_timeout_s}

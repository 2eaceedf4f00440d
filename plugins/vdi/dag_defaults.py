"""What the VDI DAGs' tasks share: ``default_args``, sensor timing, and the Airflow pools that bound the calls to
each external system (declared in ``include/airflow_pools.json``, created by ``make run``). Cheap at DAG parse."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from vdi.settings import VdiSettings, load

JIRA_POOL = "jira_api"
LEOSTREAM_POOL = "leostream_api"
AWS_POOL = "aws_api"

MAX_RETRY_DELAY = timedelta(minutes=10)


def task_defaults(settings: VdiSettings | None = None) -> dict[str, Any]:
    """``default_args``: retries with exponential backoff (``VDI_TASK_RETRIES``, ``VDI_RETRY_DELAY_S``), and an
    ``execution_timeout`` on every try (``VDI_TASK_TIMEOUT_S``; for a sensor, on each poke)."""
    settings = settings or load()
    return {
        "owner": "platform",
        "retries": settings.task_retries,
        "retry_delay": timedelta(seconds=settings.retry_delay_s),
        "retry_exponential_backoff": True,
        "max_retry_delay": MAX_RETRY_DELAY,
        "execution_timeout": timedelta(seconds=settings.task_timeout_s),
    }


def sensor_settings(settings: VdiSettings | None = None) -> dict[str, Any]:
    """Sensors reschedule (no worker slot held while waiting) and give up after ``timeout`` in all:
    ``VDI_POKE_INTERVAL_S``, ``VDI_WAIT_TIMEOUT_S``."""
    settings = settings or load()
    return {"mode": "reschedule", "poke_interval": settings.poke_interval_s, "timeout": settings.wait_timeout_s}

"""The run's summary: one dict (the ``report`` task's XCom, which ``vdi reconcile`` prints), one log line, a row
in ``reconcile_runs`` (the event log; dry runs write nothing) and Airflow metrics (``vdi.reconcile.*`` gauges,
sent wherever Airflow's metrics go: StatsD or OpenTelemetry)."""

from __future__ import annotations

import json
import logging
from typing import Any

import psycopg

from vdi.store import reconcile as store

log = logging.getLogger(__name__)

PARTS = ("deliveries", "lost_webhooks", "drift", "stuck")


def summary(run_id: str, dry_run: bool, parts: dict[str, Any]) -> dict[str, Any]:
    """The summary dict: ``dry_run``, each part's counts (``{"error": ...}`` for a part that failed) and the
    part names that failed."""
    out: dict[str, Any] = {"run_id": run_id, "dry_run": dry_run}
    for name in PARTS:
        out[name] = parts.get(name) if parts.get(name) is not None else {"error": "the task did not finish"}
    out["failed_parts"] = [name for name in PARTS if "error" in out[name]]
    return out


def _gauges(prefix: str, value: Any) -> dict[str, float]:
    """The summary's numbers as flat metric names (``vdi.reconcile.drift.orphan_instance.found``)."""
    if isinstance(value, bool):
        return {}
    if isinstance(value, int | float):
        return {prefix: float(value)}
    if isinstance(value, dict):
        out: dict[str, float] = {}
        for key, item in value.items():
            out.update(_gauges(f"{prefix}.{key}", item))
        return out
    return {}


def metrics(result: dict[str, Any]) -> dict[str, float]:
    return {name: value for part in PARTS for name, value in _gauges(f"vdi.reconcile.{part}", result[part]).items()}


def publish(conn: psycopg.Connection | None, result: dict[str, Any]) -> dict[str, Any]:
    """Log the summary, record it (unless a dry run), send its numbers as gauges; returns it with the open
    findings by kind."""
    if conn is not None:
        result = {**result, "open_findings": store.open_counts(conn)}
        if not result["dry_run"]:
            store.record_run(conn, result["run_id"], result)
    log.info("reconcile summary: %s", json.dumps(result, sort_keys=True, default=str))
    try:
        from airflow.sdk.observability.stats import Stats

        for name, value in metrics(result).items():
            Stats.gauge(name, value)
        Stats.gauge("vdi.reconcile.failed_parts", float(len(result["failed_parts"])))
    except Exception as error:  # metrics are a courtesy; the summary is in the log and the event log
        log.warning("could not send the reconcile's metrics: %s", type(error).__name__)
    return result

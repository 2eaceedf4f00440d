"""The reconcile's part for the bridge's deliveries: nothing recorded is left behind, nothing is retried forever,
and the table does not grow without end.

- Pending deliveries are re-dispatched. While a relay is running (a fresh beat), those received more than
  ``redispatch_after_s`` ago and waiting for a later attempt are made due now and the relay is notified: it
  triggers them as it triggers any delivery. With no relay running nothing else would trigger them, so the
  reconcile does, whatever their age: every due one is leased (not due again for ``redispatch_after_s``, so the
  next run takes the next ones) and returned as ``triggers``, one ``TriggerDagRunOperator`` mapping each, with
  the delivery's deterministic run id (an existing run is Airflow's "already exists": success). They stay
  pending; a relay back at work gets Airflow's 409 and marks them dispatched.
- Failed deliveries (Airflow refused them) are requeued, each at most ``requeue_max`` times; a delivery refused
  again after that is dead-lettered: status ``dead_lettered`` (final), one log line each, counted in the bridge's
  ``/metrics``. The relay dead-letters a delivery whose route's DAG does not exist itself.
- Finished deliveries are pruned by age (``received_at``): dispatched and dead-lettered ones after
  ``retention``, ignored ones after ``ignored_retention``. Pending and failed ones are never pruned. Keep both
  longer than the bridge's replay window (``BRIDGE_REPLAY_WINDOW_S``), or a late redelivery of a pruned delivery
  would be taken for a new one.

Each kind of fix is capped per run (``max_fixes``; pruning by ``prune_limit``); what is over the cap waits for
the next run (``deferred``). A dry run changes nothing and counts what it would do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import psycopg

from vdi import settings as vdi_settings
from vdi.store import deliveries as store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryPolicy:
    redispatch_after_s: float = 600.0
    requeue_max: int = 3
    max_fixes: int = 25
    retention: timedelta = timedelta(days=30)
    ignored_retention: timedelta = timedelta(days=3)
    prune_limit: int = 10_000

    def __post_init__(self):
        if self.redispatch_after_s <= 0 or self.requeue_max < 0 or self.max_fixes < 0 or self.prune_limit < 0:
            raise ValueError(f"invalid delivery policy {self}: thresholds must be positive, caps not negative")
        if min(self.retention, self.ignored_retention) < timedelta(days=1):
            raise ValueError("delivery retentions must be at least a day (longer than the bridge's replay window)")

    @classmethod
    def from_settings(cls, settings: vdi_settings.VdiSettings) -> DeliveryPolicy:
        return cls(redispatch_after_s=settings.delivery_redispatch_after_s,
                   requeue_max=settings.delivery_requeue_max,
                   max_fixes=settings.reconcile_max_fixes,
                   retention=timedelta(days=settings.delivery_retention_days),
                   ignored_retention=timedelta(days=settings.delivery_ignored_retention_days),
                   prune_limit=settings.delivery_prune_limit)


def relay_running(conn: psycopg.Connection) -> bool:
    """Whether a relay has written its beat recently (it triggers what is due)."""
    age = store.relay_report(conn).last_beat_age_s
    return age is not None and age < store.RELAY_BEAT_STALE_S


def trigger_kwargs(delivery: store.HandedOut) -> dict:
    """One mapping of the reconcile's ``TriggerDagRunOperator``: the run the relay would have created."""
    kwargs = {"trigger_dag_id": delivery.dag_id, "trigger_run_id": delivery.dag_run_id,
              "conf": {"delivery_id": delivery.delivery_id, "issue_key": delivery.issue_key,
                       "event": delivery.event}}
    if delivery.note:
        kwargs["note"] = delivery.note
    return kwargs


def _capped(found: int, cap: int) -> tuple[int, int]:
    """(done, deferred) out of ``found`` under ``cap``."""
    return min(found, cap), max(0, found - cap)


def reconcile_deliveries(conn: psycopg.Connection, *, dry_run: bool,
                         policy: DeliveryPolicy | None = None) -> dict:
    """Re-dispatch old pending deliveries, requeue or dead-letter failed ones, prune old ones (see the module).

    ``conn`` is an autocommit connection: each kind of fix commits on its own. Returns the counts (what would be
    done, on a dry run), ``relay_running``, and ``triggers``: the runs for the caller to trigger (only when no
    relay is running; empty on a dry run).
    """
    policy = policy or DeliveryPolicy.from_settings(vdi_settings.load())
    running = relay_running(conn)
    cap = policy.max_fixes
    counts = {"redispatched": 0, "to_trigger": 0, "requeued": 0, "dead_lettered": 0, "pruned": 0, "deferred": 0}
    triggers: list[dict] = []
    waiting = _waiting(conn, policy, running)
    if dry_run:
        for name, count, limit in waiting:
            counts[name], deferred = _capped(count(), limit)
            counts["deferred"] += deferred
        log.info("reconcile deliveries (dry run, nothing changed): would %s", _describe(counts, running))
        return {"dry_run": True, "relay_running": running, **counts, "triggers": triggers}

    with conn.transaction():
        if running:
            counts["redispatched"] = len(store.make_old_pending_due(conn, policy.redispatch_after_s, cap))
        else:
            handed = store.hand_out_old_pending(conn, 0, cap, lease_s=policy.redispatch_after_s)
            triggers = [trigger_kwargs(delivery) for delivery in handed]
            counts["to_trigger"] = len(triggers)
    with conn.transaction():
        dead = store.dead_letter_failed(conn, policy.requeue_max, cap)
    for delivery in dead:
        log.warning("delivery dead-lettered: delivery=%s issue=%s dag=%s reason=refused by Airflow after %d "
                    "requeues error=%s", delivery.delivery_id, delivery.issue_key, delivery.dag_id,
                    policy.requeue_max, delivery.last_error)
    counts["dead_lettered"] = len(dead)
    with conn.transaction():
        counts["requeued"] = len(store.requeue_failed(conn, policy.requeue_max, cap))
    with conn.transaction():
        counts["pruned"] = store.prune(conn, policy.retention, policy.ignored_retention, policy.prune_limit)
    # What is left over the caps, for the summary (counted after the fixes: what the next run will find).
    for name, count, limit in waiting:
        if counts[name] == limit:
            counts["deferred"] += count()
    log.info("reconcile deliveries: %s", _describe(counts, running))
    return {"dry_run": False, "relay_running": running, **counts, "triggers": triggers}


def _waiting(conn: psycopg.Connection, policy: DeliveryPolicy,
             relay_running: bool) -> list[tuple[str, Callable[[], int], int]]:
    """Each kind of fix, in the order a run makes them: its count's name, how many wait for it now, its cap."""
    # How old a pending delivery must be to be re-dispatched: with no relay running, any age.
    age = policy.redispatch_after_s if relay_running else 0.0
    return [
        ("redispatched" if relay_running else "to_trigger",
         lambda: store.count_old_pending(conn, age, due=not relay_running), policy.max_fixes),
        ("dead_lettered", lambda: store.count_failed(conn, policy.requeue_max, spent=True), policy.max_fixes),
        ("requeued", lambda: store.count_failed(conn, policy.requeue_max, spent=False), policy.max_fixes),
        ("pruned", lambda: store.count_prunable(conn, policy.retention, policy.ignored_retention),
         policy.prune_limit),
    ]


def _describe(counts: dict[str, int], running: bool) -> str:
    trigger = (f"re-dispatch {counts['redispatched']} old pending (a relay is running)" if running
               else f"trigger {counts['to_trigger']} pending here (no relay is running)")
    return (f"{trigger}, requeue {counts['requeued']} failed, dead-letter {counts['dead_lettered']}, "
            f"prune {counts['pruned']}; {counts['deferred']} left for the next run")

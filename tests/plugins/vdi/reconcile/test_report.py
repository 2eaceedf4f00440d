"""The run's summary: every part's counts (a part that did not finish says so), recorded in the event log unless
it is a dry run, and flattened into metric names."""

from __future__ import annotations

from vdi.reconcile.report import metrics, publish, summary
from vdi.store.reconcile import run_summary

PARTS = {"deliveries": {"requeued": 1}, "lost_webhooks": {"found": 2, "fixed": 2},
         "drift": {"orphan_instance": {"found": 1, "fixed": 0}, "seconds": 0.5}}


def test_a_part_that_did_not_finish_is_named_and_the_others_are_counted():
    result = summary("run-1", False, PARTS)

    assert result["stuck"] == {"error": "the task did not finish"}
    assert result["failed_parts"] == ["stuck"]
    assert result["drift"]["orphan_instance"] == {"found": 1, "fixed": 0}


def test_the_summary_is_recorded_once_per_run_and_a_dry_run_records_nothing(conn):
    publish(conn, summary("scheduled-1", False, {**PARTS, "stuck": {"found": 0}}))
    publish(conn, summary("scheduled-1", False, {**PARTS, "stuck": {"found": 0}}))
    published = publish(conn, summary("manual-dry", True, {**PARTS, "stuck": {"found": 0}}))

    assert run_summary(conn, "scheduled-1")["lost_webhooks"] == {"found": 2, "fixed": 2}
    assert conn.execute("SELECT count(*) FROM reconcile_runs").fetchone()[0] == 1
    assert run_summary(conn, "manual-dry") is None
    assert published["open_findings"] == {}


def test_the_numbers_become_gauges_named_by_part_and_kind():
    gauges = metrics(summary("run-1", False, {**PARTS, "stuck": {"found": 3}}))

    assert gauges["vdi.reconcile.drift.orphan_instance.found"] == 1.0
    assert gauges["vdi.reconcile.stuck.found"] == 3.0
    assert gauges["vdi.reconcile.deliveries.requeued"] == 1.0
    assert not any(name.endswith("dry_run") for name in gauges)

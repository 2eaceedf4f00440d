"""How one part of a reconcile run went, counted for its summary, and the cap on fixes per run."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence

import psycopg

from vdi.store import reconcile as store

log = logging.getLogger(__name__)

# found: out of step now; new: first seen by this run (reported); fixed / would_fix (dry run); deferred: over the
# run's cap, left for the next run; failed: the fix raised (the next run tries again); reported: left as it is.
COUNTS = ("found", "new", "fixed", "would_fix", "deferred", "failed", "reported")


def empty() -> dict[str, int]:
    return dict.fromkeys(COUNTS, 0)


def settle(conn: psycopg.Connection, kind: str, found: Sequence[store.Finding], *, dry_run: bool, max_fixes: int,
           fix: Callable[[store.Finding], str | None] | None = None,
           fixable: Callable[[store.Finding], bool] = lambda finding: True) -> dict[str, int]:
    """Record ``found`` (all of ``kind`` this run sees), report the new ones (one log line each), and apply
    ``fix`` to at most ``max_fixes`` of the ``fixable`` ones: it returns what it did (the finding is resolved
    with that), or None when it found nothing to do after all. The others are only reported. A dry run records
    and changes nothing and counts what it would do (``would_fix``)."""
    counts = Counter(empty())
    counts["found"] = len(found)
    if dry_run:
        new = {f.subject for f in found} - store.open_findings(conn, kind, [f.subject for f in found])
    else:
        new = store.note_findings(conn, kind, found)
    counts["new"] = len(new)
    for finding in found:
        if finding.subject in new:
            log.warning("reconcile %s: %s%s %s", kind, finding.subject,
                        f" ({finding.issue_key})" if finding.issue_key and finding.issue_key != finding.subject
                        else "", finding.detail)
    attempts = 0
    for finding in found:
        if fix is None or not fixable(finding):
            counts["reported"] += 1
            continue
        if attempts >= max_fixes:
            counts["deferred"] += 1
            if not dry_run:
                store.set_finding_action(conn, kind, finding.subject, "deferred")
            continue
        if dry_run:
            counts["would_fix"] += 1
            attempts += 1
            continue
        try:
            action = fix(finding)
        except Exception as error:  # one finding's trouble must not stop the others; the next run tries again
            from vdi.provision import readable_cause

            attempts += 1
            counts["failed"] += 1
            log.error("reconcile %s: could not fix %s: %s", kind, finding.subject, readable_cause(error))
            store.set_finding_action(conn, kind, finding.subject, "fix_failed")
            continue
        if action is None:
            counts["reported"] += 1
            continue
        attempts += 1
        counts["fixed"] += 1
        store.resolve_finding(conn, kind, finding.subject, action)
        log.info("reconcile %s: %s %s", kind, finding.subject, action)
    return dict(counts)


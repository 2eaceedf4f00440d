"""The steps of ``vdi_deprovision``, one function each, callable without Airflow (clients are passed in).

A *Desktop Removal* ticket names what it removes with issue links to *Desktop Request* tickets; with none, it
removes every live desktop of its *Desktop User*. Every step is safe to run again, as in ``vdi.provision``:
whether a run may work on the removal is ``vdi.states.refusal``'s to say (``vdi.store.removals.claim``), every
later step first checks that the run still owns it (``NotOwner`` otherwise), and only the owner writes the
outcome. The desktop requests it takes down are held for it (state ``removing``), so provisioning leaves them
alone; a request that never got a desktop, failed halfway or is already removed is a clean finish.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from vdi import ec2 as ec2_ops
from vdi.broker import remove_desktop
from vdi.catalog import Catalog
from vdi.identity import login_lookup
from vdi.jira import JiraTicket
from vdi.leostream import LeostreamClient
from vdi.provision import (DesktopFailed, NotOwner, comment_failure, comment_once, move_to_failed, permanent_cause,
                           readable_cause)
from vdi.request import JiraFieldConfig, RequestInvalid, field_id_for, login_of, person_in
from vdi.states import RequestState, Run, owns
from vdi.steps import RemovalStep
from vdi.store import removals
from vdi.store import requests as requests_store

log = logging.getLogger(__name__)

REMOVED_STATUS = "Removed"
# The tags a kept root-volume snapshot carries (and is found again by).
TAG_SNAPSHOT_OF = "vdi:snapshot-of"


class RemovalInvalid(DesktopFailed):
    """The ticket does not say what to remove; the message is in plain words for whoever filed it."""


def _hold(conn: psycopg.Connection, removal: dict, run: Run, step: RemovalStep) -> None:
    if not removals.hold(conn, removals.removal_id_for(removal["issue_key"]), run, step):
        raise NotOwner(f"{run.run_id} no longer owns the removal {removal['issue_key']}: {step} changes nothing")


def claim(conn: psycopg.Connection, jira: JiraTicket, issue_key: str, run: Run, removal_status: str) -> dict | None:
    """The removal, claimed for this run (JSON-able), or None when this run has nothing to do. The ticket's
    status is read fresh from Jira (webhooks arrive out of order)."""
    status = jira.status(issue_key)
    claimed = removals.claim(conn, issue_key, run, status, removal_status)
    if not claimed.proceed:
        log.info("nothing to do: %s", claimed.reason)
        return None
    return {"issue_key": issue_key}


def linked_requests(issue: dict[str, Any], request_type: str) -> list[str]:
    """The keys of the *Desktop Request* tickets the issue links to (either way round, any link type)."""
    keys = []
    for link in (issue.get("fields") or {}).get("issuelinks") or []:
        for end in ("outwardIssue", "inwardIssue"):
            other = link.get(end) if isinstance(link, dict) else None
            kind = ((other or {}).get("fields") or {}).get("issuetype") or {}
            if other and str(kind.get("name", "")).casefold() == request_type.casefold() and other.get("key"):
                keys.append(other["key"])
    return sorted(set(keys))


def removal_login(jira: JiraTicket, issue: dict[str, Any], fields: JiraFieldConfig) -> str:
    """The Leostream login of the ticket's *Desktop User*, found as a request's is (``RemovalInvalid`` when the
    ticket names nobody, or nobody whose login can be found)."""
    key = issue.get("key", "")
    issue_fields = issue.get("fields") or {}
    field_names = jira.field_names()
    person = person_in(issue_fields.get(field_id_for(fields.user_field, field_names)))
    if person is None:
        raise RemovalInvalid(f"the ticket neither links to the desktop request to remove nor names its "
                             f"{fields.user_field}; link it to the desktop's request ticket, then use Retry Removal")
    try:
        return login_of(key, person, issue_fields, fields, field_names, login_lookup(jira)).strip().lower()
    except RequestInvalid as invalid:
        raise RemovalInvalid(f"{'; '.join(invalid.problems)}; or link the ticket to the desktop's request ticket, "
                             "then use Retry Removal") from None


def resolve(conn: psycopg.Connection, jira: JiraTicket, removal: dict, run: Run, fields: JiraFieldConfig,
            request_type: str) -> list[str]:
    """Find what to remove (the linked requests, else the user's live desktops), hold each request for this
    removal, and say what became of each; the keys held."""
    _hold(conn, removal, run, RemovalStep.RESOLVE)
    key = removal["issue_key"]
    removal_id = removals.removal_id_for(key)
    issue = jira.issue(key)
    targets = linked_requests(issue, request_type)
    detail: dict[str, Any] = {"by": "link"}
    if not targets:
        login = removal_login(jira, issue, fields)
        targets = removals.live_desktops(conn, login)
        detail = {"by": "user", "login": login}
    targets = removals.set_targets(conn, removal_id, targets, detail)
    outcomes = {target: removals.take_target(conn, key, target, run) for target in targets}
    removals.merge_detail(conn, removal_id, {"outcomes": outcomes})
    removals.record_event(conn, removal_id, RemovalStep.RESOLVE, "resolved", {**detail, "outcomes": outcomes})
    return [target for target, outcome in outcomes.items() if outcome == removals.TAKEN]


def _removing(conn: psycopg.Connection, removal: dict) -> list[dict]:
    return [row for row in removals.held_requests(conn, removal["issue_key"]) if row["state"] == "removing"]


def remove_from_broker(conn: psycopg.Connection, client: LeostreamClient, removal: dict, run: Run) -> dict:
    """Each held desktop taken out of the broker (``vdi.broker.remove_desktop``: only what VDI Studios made)."""
    _hold(conn, removal, run, RemovalStep.REMOVE_FROM_BROKER)
    done = {}
    for row in _removing(conn, removal):
        result = remove_desktop(client, row["issue_key"], row["desktop_user"], (row["detail"] or {}).get("leostream"))
        requests_store.record_event(conn, row["request_id"], RemovalStep.REMOVE_FROM_BROKER, "done", result)
        done[row["issue_key"]] = result
    return done


def _instances(ec2, row: dict) -> list[dict]:
    """The request's live instances: every one tagged with it (a launch may have raced the removal)."""
    return ec2_ops.request_instances(ec2, str(row["request_id"]))


def _snapshot_wanted(catalog: Catalog, row: dict) -> bool:
    bundle = catalog.bundles.get(row["bundle"] or "")
    return bool(bundle and bundle.snapshot_on_removal)


def _snapshot_tags(row: dict, instance_id: str) -> dict[str, str]:
    return {ec2_ops.TAG_REQUEST: str(row["request_id"]), ec2_ops.TAG_ISSUE: row["issue_key"],
            TAG_SNAPSHOT_OF: instance_id}


def instances_stopped(conn: psycopg.Connection, ec2, removal: dict, run: Run, catalog: Catalog) -> bool:
    """Stop each held desktop's running instances; True once all are stopped (and, where the bundle keeps one,
    the root volume's snapshot is complete). An instance still pending is stopped at a later poke."""
    _hold(conn, removal, run, RemovalStep.STOP_INSTANCES)
    all_stopped = True
    for row in _removing(conn, removal):
        for instance in _instances(ec2, row):
            instance_id = instance["InstanceId"]
            state = instance["State"]["Name"]
            if state == "running":
                try:
                    ec2_ops.dispose_instance(ec2, instance_id, "stop")
                    requests_store.record_event(conn, row["request_id"], RemovalStep.STOP_INSTANCES, "stopping",
                                                {"instance_id": instance_id})
                except ec2_ops.InstanceStateError as error:
                    if not error.retry_later:
                        raise
            if state != "stopped":
                all_stopped = False
                continue
            if _snapshot_wanted(catalog, row):
                snapshot = ec2_ops.snapshot_root_volume(ec2, instance, _snapshot_tags(row, instance_id))
                if snapshot and snapshot["State"] == "error":
                    raise DesktopFailed("the copy of its disk that was to be kept could not be made")
                if snapshot and snapshot["State"] != "completed":
                    all_stopped = False
    return all_stopped


def terminate_instances(conn: psycopg.Connection, ec2, removal: dict, run: Run, catalog: Catalog) -> dict:
    """Terminate each held desktop's instances (stopped by now; a snapshot the bundle keeps is complete)."""
    _hold(conn, removal, run, RemovalStep.TERMINATE_INSTANCES)
    done: dict[str, dict] = {}
    for row in _removing(conn, removal):
        results = {}
        for instance in _instances(ec2, row):
            instance_id = instance["InstanceId"]
            snapshot = None
            if _snapshot_wanted(catalog, row):
                snapshot = ec2_ops.snapshot_root_volume(ec2, instance, _snapshot_tags(row, instance_id))
                if snapshot and snapshot["State"] != "completed":
                    raise RuntimeError(f"the snapshot of {instance_id} is {snapshot['State']}: not terminating yet")
            results[instance_id] = {"result": ec2_ops.dispose_instance(ec2, instance_id, "terminate"),
                                    "snapshot_id": snapshot["SnapshotId"] if snapshot else None}
        requests_store.record_event(conn, row["request_id"], RemovalStep.TERMINATE_INSTANCES, "done",
                                    {"instances": results})
        done[row["issue_key"]] = results
    return done


def _instance_record(conn: psycopg.Connection, row: dict) -> dict:
    """What the removal did to the request's instances and broker objects, from its event log."""
    record: dict[str, Any] = {"instances": {}, "broker": None}
    for event in requests_store.events(conn, row["request_id"]):
        if event["step"] == RemovalStep.TERMINATE_INSTANCES and event["outcome"] == "done":
            record["instances"].update(event["detail"].get("instances") or {})
        if event["step"] == RemovalStep.REMOVE_FROM_BROKER and event["outcome"] == "done":
            record["broker"] = event["detail"]
    return record


def finish(conn: psycopg.Connection, jira: JiraTicket, removal: dict, run: Run) -> None:
    """Record each held desktop ``removed``, tell its request ticket, sum up on the removal ticket, move it to
    Removed, and record the removal ``removed``."""
    _hold(conn, removal, run, RemovalStep.FINISH)
    key = removal["issue_key"]
    removal_id = removals.removal_id_for(key)
    for row in _removing(conn, removal):
        removals.mark_removed(conn, row["request_id"], key, run, _instance_record(conn, row))
    held = removals.held_requests(conn, key)
    for row in held:
        comment_once(conn, jira, row["issue_key"], f"removed-{key}",
                     f"This desktop was removed, as asked in {key}. It is no longer offered at sign-in.")
    outcomes = (removals.get_removal(conn, key)["detail"] or {}).get("outcomes") or {}
    comment_once(conn, jira, key, "removed", summary(outcomes, [row["issue_key"] for row in held]))
    moved = jira.transition_to(key, REMOVED_STATUS)
    if not removals.set_outcome(conn, removal_id, run, RequestState.REMOVED, RemovalStep.FINISH, "removed",
                                {"transitioned": moved, "removed": [row["issue_key"] for row in held],
                                 "outcomes": outcomes}):
        raise NotOwner(f"{run.run_id} lost the removal {key} while finishing it")


def summary(outcomes: dict[str, str], removed: list[str]) -> str:
    """The removal ticket's closing comment, in plain words."""
    lines = []
    if removed:
        lines.append(f"Removed: {', '.join(removed)}.")
    others: dict[str, list[str]] = {}
    for target, outcome in sorted(outcomes.items()):
        if target not in removed:
            others.setdefault(outcome, []).append(target)
    for outcome, keys in others.items():
        lines.append(f"Left alone ({outcome}): {', '.join(keys)}.")
    if not outcomes:
        lines.append("There was no desktop to remove.")
    return "\n".join(lines)


def record_failure(conn: psycopg.Connection, jira: JiraTicket | None, issue_key: str, run: Run, step: RemovalStep,
                   error: BaseException | None, attempt: str) -> None:
    """After the last retry of a step of the run that owns the removal: state ``failed`` at ``step``, the ticket
    moved to Failed and a comment in plain words (the cause in full goes to the event log). *Retry Removal*
    (Failed → Removal Requested) starts it again. A run that does not own the removal changes nothing."""
    row = removals.get_removal(conn, issue_key)
    if not owns(row, run):
        log.info("%s failed at %s, but does not own the removal %s: nothing to report", run.run_id, step, issue_key)
        return
    removal_id = row["removal_id"]
    error = permanent_cause(error)
    detail = {"cause": readable_cause(error), "attempt": attempt, "run_id": run.run_id}
    if not removals.set_outcome(conn, removal_id, run, RequestState.FAILED, step, "failed", detail,
                                merge={"failure": {"step": str(step), "ticket_failed": False}}):
        log.info("%s lost the removal %s before recording its failure", run.run_id, issue_key)
        return
    if jira is None:
        return
    ticket_failed = move_to_failed(jira, issue_key)
    if ticket_failed:
        removals.merge_detail(conn, removal_id, {"failure": {"step": str(step), "ticket_failed": True}})
    comment_failure(conn, jira, issue_key, run, step, error, attempt, work="Removal", retry="Retry Removal",
                    ticket_failed=ticket_failed)


def on_task_failure(context: dict[str, Any]) -> None:
    """``on_failure_callback`` of the removal tasks: runs once a task has no retry left."""
    from vdi.callbacks import record_task_failure

    record_task_failure(context, record_failure, RemovalStep)

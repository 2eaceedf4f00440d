"""The steps of ``vdi_provision``, one function each, callable without Airflow (clients are passed in).

Every step is safe to run again: it reads what is there before it writes, so a retry, a cleared task or a
rerun of the whole DAG run adds no second instance, broker object, comment or transition. Whether a run may
work on a ticket at all is ``vdi.states.refusal``'s to say; once a run has claimed the request, every later
step first checks that it still owns it (``NotOwner`` otherwise) and only the owner writes the outcome.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from vdi import ec2 as ec2_ops
from vdi.broker import LeostreamUserConflict, Registration, desktop_in_pool, register_desktop
from vdi.catalog import Catalog, RequestRejected
from vdi.identity import login_lookup
from vdi.jira import JiraTicket, comment_marker
from vdi.leostream import LeostreamClient
from vdi.request import DesktopRequest, JiraFieldConfig, RequestInvalid, parse_issue, request_id_for, status_name
from vdi.states import RequestState, Run, owns, refusal
from vdi.steps import RemovalStep, Step
from vdi.store import requests as store
from vdi.store.db import connect

log = logging.getLogger(__name__)

IN_PROGRESS_STATUS = "In Progress"
READY_STATUS = "Ready"
FAILED_STATUS = "Failed"
GONE_STATES = ("shutting-down", "terminated")


class NotOwner(RuntimeError):
    """This run no longer owns the request (another run took it over, or it is settled): it stops here and
    changes nothing."""


class DesktopFailed(RuntimeError):
    """A failure that no retry of the step mends; the message is in plain words for the requester."""


class BootstrapFailed(DesktopFailed):
    """The desktop's first boot reported ``vdi:bootstrap=failed``."""


class BootstrapTimedOut(DesktopFailed):
    """The desktop's first boot reported no outcome in time."""


# Failures the task should not retry: each says in plain words what went wrong.
PERMANENT_FAILURES = (DesktopFailed, LeostreamUserConflict)
# Failures a retry may mend whose message is in plain words too (said after the last retry).
PLAIN_WORDED_FAILURES = (ec2_ops.CapacityUnavailable,)


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


@contextmanager
def database() -> Iterator[psycopg.Connection]:
    """A task's connection to the app database: autocommit, every statement and lock wait bounded
    (``VDI_LOCK_TIMEOUT_S``)."""
    with connect(autocommit=True) as conn:
        store.bound_waits(conn)
        yield conn


def _hold(conn: psycopg.Connection, request: DesktopRequest, run: Run, step: Step) -> None:
    if not store.hold(conn, request.request_id, run, step):
        raise NotOwner(f"{run.run_id} no longer owns {request.issue_key}: {step} changes nothing")


def validate(jira: JiraTicket, issue_key: str, fields: JiraFieldConfig, conn: psycopg.Connection,
             run: Run) -> dict | None:
    """The ticket as a request (JSON-able), or None when this run has nothing to do.

    The issue is read fresh from Jira (webhooks arrive out of order). One with missing or bad fields gets a
    comment naming them and is recorded as rejected.
    """
    issue = jira.issue(issue_key)
    status = status_name(issue.get("fields") or {})
    if reason := refusal(issue_key, store.get_request(conn, issue_key), run, status, fields.trigger_status):
        log.info("nothing to do: %s", reason)
        return None
    try:
        request = parse_issue(issue, fields, jira.field_names(), login_lookup(jira))
    except RequestInvalid as invalid:
        _reject_invalid(conn, jira, issue_key, invalid)
        return None
    return request.model_dump(mode="json")


def _reject_invalid(conn: psycopg.Connection, jira: JiraTicket, issue_key: str, invalid: RequestInvalid) -> None:
    request_id = request_id_for(issue_key)
    reason = str(invalid).split(": ", 1)[-1]
    store.record_invalid(conn, request_id, issue_key, {"missing": invalid.missing, "problems": invalid.problems})
    comment_once(conn, jira, issue_key, f"invalid-{_short_hash(reason)}",
                 f"This desktop request cannot be processed: {reason}. "
                 "Please complete the ticket; it will be picked up again when it is approved.")


def comment_once(conn: psycopg.Connection, jira: JiraTicket, issue_key: str, step: str, text: str) -> bool:
    """Post ``text`` on the ticket unless the comment of ``step`` is already there; True when posted.

    Under the ticket's lock: two runs of one ticket at once (an approval delivered as two events, say) cannot
    both find the comment missing and both post it.
    """
    marker = comment_marker(str(request_id_for(issue_key)), step)
    with store.ticket_lock(conn, issue_key):
        return jira.comment_once(issue_key, marker, text)


def dedupe(conn: psycopg.Connection, request: DesktopRequest, run: Run, trigger_status: str) -> bool:
    """True when this run should go on; False when the ticket already has a desktop (or one on the way)."""
    reason = refusal(request.issue_key, store.get_request(conn, request.issue_key), run, request.status,
                     trigger_status)
    if reason:
        log.info("nothing to do: %s", reason)
    return not reason


def persist(conn: psycopg.Connection, jira: JiraTicket, request: DesktopRequest, run: Run, catalog: Catalog,
            trigger_status: str) -> bool:
    """Claim the request for this run and apply the guardrails; False when it must not go on. ``dedupe`` first
    (one read): a run with nothing to do stops before it takes the row lock; the claim decides under the lock."""
    if not dedupe(conn, request, run, trigger_status):
        return False
    claim = store.claim(conn, request, run, trigger_status)
    if not claim.proceed:
        log.info("nothing to do: %s", claim.reason)
        return False
    try:
        catalog.check(request, **store.guardrail_counts(conn, request))
    except RequestRejected as rejected:
        store.set_state(conn, request.request_id, RequestState.REJECTED, Step.PERSIST, "rejected",
                        {"reason": str(rejected)})
        comment_once(conn, jira, request.issue_key, f"rejected-{_short_hash(str(rejected))}",
                     f"This desktop request was not accepted: {rejected}.")
        return False
    return True


def mark_in_progress(conn: psycopg.Connection, jira: JiraTicket, request: DesktopRequest, run: Run,
                     os_family: str) -> None:
    """Move the ticket to In Progress and tell the requester what is coming, once."""
    _hold(conn, request, run, Step.JIRA_IN_PROGRESS)
    moved = jira.transition_to(request.issue_key, IN_PROGRESS_STATUS)
    comment_once(conn, jira, request.issue_key, "in_progress",
                 f"VDI Studios is preparing a {request.bundle} desktop ({os_family}) for "
                 f"{request.user.display_name}. You will find the connection details here when it is ready.")
    store.record_event(conn, request.request_id, Step.JIRA_IN_PROGRESS, "done", {"transitioned": moved})


def launch(conn: psycopg.Connection, ec2, request: DesktopRequest, run: Run, catalog: Catalog, os_family: str,
           user_data: str, bootstrap_deadline_s: float) -> str:
    """The request's instance id: the tagged instance, started when stopped; else one launched under the
    request's launch generation. The generation moves on when the recorded instance is gone (terminated or
    lost), or is terminated here because its first boot failed or reported nothing within
    ``bootstrap_deadline_s`` (a first boot does not run again)."""
    _hold(conn, request, run, Step.LAUNCH_INSTANCE)
    row = store.get_request(conn, request.issue_key)
    generation = row["launch_generation"]
    if recorded := row["instance_id"]:
        state = ec2_ops.instance_state(ec2, recorded)
        if state is None or state in GONE_STATES:
            generation = store.next_generation(conn, request.request_id, recorded, {"state": state or "lost"})
        elif reason := _failed_first_boot(conn, ec2, request, recorded, bootstrap_deadline_s):
            disposed = ec2_ops.dispose_instance(ec2, recorded, "terminate")
            generation = store.next_generation(conn, request.request_id, recorded,
                                               {"state": state, "bootstrap": reason, "disposed": disposed})
    bundle = catalog.bundles[request.bundle]
    params = ec2_ops.run_instances_params(request, bundle, os_family, catalog.region, user_data, generation, ec2=ec2)
    instance_id, launched = ec2_ops.launch_once(ec2, params, request.request_id)
    started = None if launched else ec2_ops.ensure_running(ec2, instance_id)
    store.set_instance(conn, request.request_id, instance_id, {
        "launched_now": launched, "started": started, "generation": generation,
        "client_token": params["ClientToken"], "instance_type": params["InstanceType"],
        "image_id": params["ImageId"]})
    return instance_id


def _failed_first_boot(conn: psycopg.Connection, ec2, request: DesktopRequest, instance_id: str,
                       deadline_s: float) -> str:
    """``failed`` or ``overdue`` when the instance's first boot will not make it a desktop; "" otherwise."""
    status = ec2_ops.bootstrap_outcome(ec2, instance_id).status
    if status == ec2_ops.BOOTSTRAP_FAILED:
        return "failed"
    waited = store.seconds_since_launch(conn, request.request_id, instance_id)
    if status != ec2_ops.BOOTSTRAP_DONE and waited is not None and waited > deadline_s:
        return "overdue"
    return ""


def instance_ready(conn: psycopg.Connection, ec2, request: DesktopRequest, run: Run, instance_id: str) -> bool:
    """True once the instance runs with both status checks passed; an instance going away is an error."""
    _hold(conn, request, run, Step.WAIT_INSTANCE_RUNNING)
    status = ec2_ops.instance_status(ec2, instance_id)
    if status["state"] in ("shutting-down", "terminated", "stopping", "stopped"):
        raise RuntimeError(f"instance {instance_id} is {status['state']}")
    log.info("instance %s: %s", instance_id, status)
    return ec2_ops.is_ready(status)


def bootstrap_finished(conn: psycopg.Connection, ec2, request: DesktopRequest, run: Run, instance_id: str,
                       deadline_s: float) -> bool:
    """True once the desktop's first boot tagged the instance ``vdi:bootstrap=done``; ``BootstrapFailed`` with
    the bootstrap's own cause when it tagged ``failed``; ``BootstrapTimedOut`` when neither came within
    ``deadline_s`` of the launch (``VDI_BOOTSTRAP_TIMEOUT_S``)."""
    _hold(conn, request, run, Step.WAIT_BOOTSTRAP)
    outcome = ec2_ops.bootstrap_outcome(ec2, instance_id)
    if outcome.status == ec2_ops.BOOTSTRAP_DONE:
        store.record_event(conn, request.request_id, Step.WAIT_BOOTSTRAP, "done", {"instance_id": instance_id})
        return True
    if outcome.status == ec2_ops.BOOTSTRAP_FAILED:
        raise BootstrapFailed(f"it failed ({outcome.cause})" if outcome.cause else "it failed")
    waited = store.seconds_since_launch(conn, request.request_id, instance_id)
    if waited is not None and waited > deadline_s:
        raise BootstrapTimedOut(f"it did not finish within {_duration(deadline_s)}")
    log.info("instance %s: first boot not finished after %.0f s", instance_id, waited or 0)
    return False


def _duration(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds:.0f} seconds"


def register(conn: psycopg.Connection, client: LeostreamClient, request: DesktopRequest, run: Run,
             catalog: Catalog, instance_id: str) -> dict:
    """The desktop's broker objects (looked up before created), recorded on the request."""
    _hold(conn, request, run, Step.REGISTER_DESKTOP)
    registration = register_desktop(client, request, catalog.bundles[request.bundle],
                                    ec2_ops.instance_name(request.issue_key))
    with conn.transaction():
        store.merge_detail(conn, request.request_id, {"leostream": registration.as_dict()})
        store.record_event(conn, request.request_id, Step.REGISTER_DESKTOP, "done",
                           {"instance_id": instance_id, **registration.as_dict()})
    return registration.as_dict()


def desktop_discovered(conn: psycopg.Connection, client: LeostreamClient, request: DesktopRequest, run: Run,
                       registration: dict) -> bool:
    """True once the broker lists the desktop in its pool; otherwise asks for another center scan."""
    _hold(conn, request, run, Step.WAIT_DESKTOP_IN_POOL)
    reg = Registration(**registration)
    if desktop_in_pool(client, reg.pool_id, ec2_ops.instance_name(request.issue_key)):
        return True
    client.scan_center(reg.center_id)
    return False


def agent_running(conn: psycopg.Connection, client: LeostreamClient, request: DesktopRequest, run: Run,
                  registration: dict) -> bool:
    """True once the broker counts a running Leostream agent in the desktop's own pool (which holds only this
    desktop); otherwise asks for another center scan."""
    _hold(conn, request, run, Step.WAIT_AGENT_RUNNING)
    reg = Registration(**registration)
    stats = client.pool(reg.pool_id).get("pool_stats") or {}
    if int(stats.get("total_agent_running") or 0) >= 1:
        store.record_event(conn, request.request_id, Step.WAIT_AGENT_RUNNING, "done", {"pool_id": reg.pool_id})
        return True
    client.scan_center(reg.center_id)
    return False


def finish_ready(conn: psycopg.Connection, jira: JiraTicket, request: DesktopRequest, run: Run, registration: dict,
                 broker_address: str, instance_id: str) -> None:
    """Hand the desktop over: the connection comment, the Ready status, and ``ready`` with timings."""
    _hold(conn, request, run, Step.JIRA_READY)
    name = ec2_ops.instance_name(request.issue_key)
    comment_once(conn, jira, request.issue_key, "ready",
                 f"Your desktop is ready.\n"
                 f"* Broker: {broker_address}\n"
                 f"* Sign in with the Leostream client as: {request.user.login}\n"
                 f"* Desktop: {name} ({request.bundle})\n"
                 "It is offered to you from your Leostream policy the next time you sign in.")
    # A resumed run finds the ticket in Failed, from where the workflow leads back through In Progress.
    moved = jira.transition_to(request.issue_key, READY_STATUS, via=(IN_PROGRESS_STATUS,))
    if not store.set_outcome(conn, request.request_id, run, RequestState.READY, Step.JIRA_READY, "ready",
                             {"instance_id": instance_id, "transitioned": moved,
                              "timings_s": timings(conn, request)}):
        raise NotOwner(f"{run.run_id} lost {request.issue_key} while handing it over")


def timings(conn: psycopg.Connection, request: DesktopRequest) -> dict[str, float]:
    """Seconds from the latest claim to the first success of each later step."""
    events = store.events(conn, request.request_id)
    claims = [e for e in events if e["step"] == Step.PERSIST and e["outcome"] == "claimed"]
    if not claims:
        return {}
    start = claims[-1]["at"]
    result: dict[str, float] = {}
    for event in events:
        if event["at"] >= start and event["step"] not in result and event["outcome"] in ("done", "launched"):
            result[event["step"]] = round((event["at"] - start).total_seconds(), 3)
    return result


_SECRETISH = [
    (re.compile(r"(://[^:/@\s]+:)[^@\s]+@"), r"\1***@"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
    (re.compile(r"(?i)(password|token|secret|sid)([\"']?\s*[:=]\s*[\"']?)[^\s,\"'}]+"), r"\1\2***"),
]

# What the requester must not read: resource names, addresses and host names (the event log keeps them).
_INTERNAL = [
    (re.compile(r"\barn:aws[\w-]*:[^\s,;'\"()]+"), "an AWS resource"),
    (re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.I), "an internal address"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "an internal address"),
    (re.compile(r"(?<![\w@.-])(?:[a-z0-9-]+\.){2,}(?:internal|local|localdomain|lan|corp|intra|com|net|org|io"
                r"|cloud|aws|example|test|[a-z]{2})(?::\d+)?(?![\w.-])", re.I), "an internal host"),
]


def readable_cause(error: BaseException | None) -> str:
    """One line about what went wrong, for the event log: without a stack trace or anything secret-looking."""
    if error is None:
        return "the step failed"
    text = " ".join(str(error).split()) or type(error).__name__
    for pattern, replacement in _SECRETISH:
        text = pattern.sub(replacement, text)
    return f"{type(error).__name__}: {text[:300]}"


def plain_cause(error: BaseException | None) -> str:
    """What went wrong as the requester may read it ("" when nothing can be said): a permanent failure's own
    words, or the kind of trouble; never a resource name, an address, a host name or a stack trace."""
    for link in _cause_chain(error):
        if isinstance(link, PERMANENT_FAILURES + PLAIN_WORDED_FAILURES):
            text = " ".join(str(link).split())
            for pattern, replacement in _SECRETISH + _INTERNAL:
                text = pattern.sub(replacement, text)
            return text[:400].rstrip(".")
    for link in _cause_chain(error):
        if isinstance(link, TimeoutError) or type(link).__name__.endswith("Timeout"):
            return "it did not finish in time"
        if isinstance(link, ConnectionError) or type(link).__name__ == "ConnectionError":
            return "a service it needs could not be reached"
        status = getattr(getattr(link, "response", None), "status_code", None)
        if isinstance(getattr(link, "response", None), dict):  # botocore's ClientError (RequestLimitExceeded 503)
            status = link.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(status, int) and (status == 429 or status >= 500):
            return "a service it needs was unavailable"
    return ""


def _cause_chain(error: BaseException | None):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def permanent_cause(error: BaseException | None) -> BaseException | None:
    """The permanent failure in ``error``'s chain, else ``error``: a permanent failure reaches the failure callback
    wrapped in the exception that stopped the task's retries."""
    return next((link for link in _cause_chain(error) if isinstance(link, PERMANENT_FAILURES)), error)


def move_to_failed(jira: JiraTicket, issue_key: str) -> bool:
    """Move the ticket to Failed; whether it moved (a failure to move it is logged: the comment that follows is
    what matters to whoever filed it)."""
    try:
        jira.transition_to(issue_key, FAILED_STATUS)
        return True
    except Exception as transition_error:
        log.warning("could not move %s to %s: %s", issue_key, FAILED_STATUS, readable_cause(transition_error))
        return False


def comment_failure(conn: psycopg.Connection, jira: JiraTicket, issue_key: str, run: Run, step: Step | RemovalStep,
                    error: BaseException | None, attempt: str, *, work: str, retry: str, ticket_failed: bool) -> None:
    """The failure's comment, once per attempt, in plain words: ``work`` ("Provisioning") stopped while doing
    ``step``, why when that can be said, and what to do (``retry`` on the ticket, when it moved to Failed)."""
    cause = plain_cause(error)
    what_to_do = (f"use {retry} on this ticket to try again; if it stops again, contact the platform team"
                  if ticket_failed else "contact the platform team")
    comment_once(conn, jira, issue_key, f"failed-{step}-{attempt}",
                 f"{work} stopped while {step.title}{': ' + cause if cause else ''}.\n"
                 f"What to do: {what_to_do} (reference: {run.run_id}, step {step}).")


def record_failure(conn: psycopg.Connection, jira: JiraTicket | None, issue_key: str, run: Run, step: Step,
                   error: BaseException | None, attempt: str, *, ec2=None, catalog: Catalog | None = None) -> None:
    """After the last retry of a step of the run that owns the request: state ``failed`` at ``step``, the
    instance stopped, terminated or kept as the bundle's catalog entry says (with ``ec2``), the ticket moved to
    Failed and a comment in plain words. The cause in full (masked secrets aside) goes to the event log.

    A run that does not own the request (a stray delivery for a ready ticket, a run that never claimed it, or
    one whose request was taken over) changes nothing and posts nothing.
    """
    row = store.get_request(conn, issue_key)
    if not owns(row, run):
        log.info("%s failed at %s, but does not own %s: nothing to report", run.run_id, step, issue_key)
        return
    request_id = row["request_id"]
    error = permanent_cause(error)
    detail = {"cause": readable_cause(error), "attempt": attempt, "run_id": run.run_id}
    if operator_detail := getattr(error, "operator_detail", None):
        detail["operator_detail"] = operator_detail
    # One transaction: the row stays locked while the instance is disposed of, so a run taking the failed
    # request over cannot launch on it meanwhile.
    with conn.transaction():
        if not store.set_outcome(conn, request_id, run, RequestState.FAILED, step, "failed", detail,
                                 merge={"failure": {"step": str(step), "ticket_failed": False}}):
            log.info("%s lost %s before recording its failure: nothing to report", run.run_id, issue_key)
            return
        if ec2 is not None:
            _dispose(conn, ec2, row, step, _on_failure_action(catalog, row["bundle"]))
    if jira is None:
        return
    ticket_failed = move_to_failed(jira, issue_key)
    if ticket_failed:
        store.merge_detail(conn, request_id, {"failure": {"step": str(step), "ticket_failed": True}})
    comment_failure(conn, jira, issue_key, run, step, error, attempt, work="Provisioning", retry="Retry",
                    ticket_failed=ticket_failed)


def _on_failure_action(catalog: Catalog | None, bundle: str | None) -> str:
    if catalog is None or bundle not in catalog.bundles:
        return "terminate"
    return catalog.bundles[bundle].on_failure


def _dispose(conn: psycopg.Connection, ec2, row: dict, step: Step, action: str) -> None:
    """The failed request's instance stopped, terminated or kept as ``action`` says; recorded either way."""
    request_id = row["request_id"]
    instance_id = row["instance_id"]
    try:
        if not instance_id and (found := ec2_ops.find_request_instance(ec2, request_id)):
            instance_id = found["InstanceId"]
        if not instance_id:
            return
        result = ec2_ops.dispose_instance(ec2, instance_id, action)
    except Exception as error:  # the failure is still reported; the event log tells the operator what is left
        log.error("could not dispose of the instance of %s: %s", row["issue_key"], readable_cause(error))
        store.record_event(conn, request_id, step, "instance_dispose_failed",
                           {"instance_id": instance_id, "action": action, "cause": readable_cause(error)})
        return
    store.record_event(conn, request_id, step, "instance_disposed",
                       {"instance_id": instance_id, "action": action, "result": result})

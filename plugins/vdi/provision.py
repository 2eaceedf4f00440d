"""The steps of ``vdi_provision``, one function each, callable without Airflow (clients are passed in).

Every step is safe to run again: it reads what is there before it writes, so a retry, a cleared task or a
rerun of the whole DAG run adds no second instance, broker object, comment or transition. Whether a run may
work on a ticket at all is ``vdi.states.refusal``'s to say.
"""

from __future__ import annotations

import hashlib
import logging
import re

import psycopg

from vdi import ec2 as ec2_ops
from vdi.broker import Registration, desktop_in_pool, register_desktop
from vdi.catalog import Catalog, RequestRejected
from vdi.jira import JiraTicket, comment_marker
from vdi.leostream import LeostreamClient
from vdi.request import DesktopRequest, JiraFieldConfig, RequestInvalid, parse_issue, request_id_for, status_name
from vdi.states import RequestState, Run, refusal
from vdi.steps import Step
from vdi.store import requests as store

log = logging.getLogger(__name__)

IN_PROGRESS_STATUS = "In Progress"
READY_STATUS = "Ready"
FAILED_STATUS = "Failed"


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


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
        request = parse_issue(issue, fields, jira.field_names())
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
    """Claim the request for this run and apply the guardrails; False when it must not go on."""
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


def mark_in_progress(conn: psycopg.Connection, jira: JiraTicket, request: DesktopRequest, os_family: str) -> None:
    """Move the ticket to In Progress and tell the requester what is coming, once."""
    moved = jira.transition_to(request.issue_key, IN_PROGRESS_STATUS)
    comment_once(conn, jira, request.issue_key, "in_progress",
                 f"VDI Studios is preparing a {request.bundle} desktop ({os_family}) for "
                 f"{request.user.display_name}. You will find the connection details here when it is ready.")
    store.record_event(conn, request.request_id, Step.JIRA_IN_PROGRESS, "done", {"transitioned": moved})


def launch(conn: psycopg.Connection, ec2, request: DesktopRequest, catalog: Catalog, os_family: str,
           user_data: str) -> str:
    """The request's instance id; launches only when no instance carries the request's tag."""
    bundle = catalog.bundles[request.bundle]
    params = ec2_ops.run_instances_params(request, bundle, os_family, catalog.region, user_data)
    instance_id, launched = ec2_ops.launch_once(ec2, params, request.request_id)
    store.set_instance(conn, request.request_id, instance_id, {
        "launched_now": launched, "instance_type": params["InstanceType"], "image_id": params["ImageId"]})
    return instance_id


def instance_ready(ec2, instance_id: str) -> bool:
    """True once the instance runs with both status checks passed; an instance going away is an error."""
    status = ec2_ops.instance_status(ec2, instance_id)
    if status["state"] in ("shutting-down", "terminated", "stopping", "stopped"):
        raise RuntimeError(f"instance {instance_id} is {status['state']}")
    log.info("instance %s: %s", instance_id, status)
    return ec2_ops.is_ready(status)


def register(conn: psycopg.Connection, client: LeostreamClient, request: DesktopRequest, catalog: Catalog,
             instance_id: str) -> dict:
    """The desktop's broker objects (looked up before created), recorded on the request."""
    registration = register_desktop(client, request, catalog.bundles[request.bundle],
                                    ec2_ops.instance_name(request.issue_key))
    with conn.transaction():
        store.merge_detail(conn, request.request_id, {"leostream": registration.as_dict()})
        store.record_event(conn, request.request_id, Step.REGISTER_DESKTOP, "done",
                           {"instance_id": instance_id, **registration.as_dict()})
    return registration.as_dict()


def desktop_discovered(client: LeostreamClient, request: DesktopRequest, registration: dict) -> bool:
    """True once the broker lists the desktop in its pool; otherwise asks for another center scan."""
    reg = Registration(**registration)
    if desktop_in_pool(client, reg.pool_id, ec2_ops.instance_name(request.issue_key)):
        return True
    client.scan_center(reg.center_id)
    return False


def finish_ready(conn: psycopg.Connection, jira: JiraTicket, request: DesktopRequest, registration: dict,
                 broker_address: str, instance_id: str) -> None:
    """Hand the desktop over: the connection comment, the Ready status, and ``ready`` with timings."""
    name = ec2_ops.instance_name(request.issue_key)
    comment_once(conn, jira, request.issue_key, "ready",
                 f"Your desktop is ready.\n"
                 f"* Broker: {broker_address}\n"
                 f"* Sign in with the Leostream client as: {request.user.login}\n"
                 f"* Desktop: {name} ({request.bundle})\n"
                 "It is offered to you from your Leostream policy the next time you sign in.")
    # A resumed run finds the ticket in Failed, from where the workflow leads back through In Progress.
    moved = jira.transition_to(request.issue_key, READY_STATUS, via=(IN_PROGRESS_STATUS,))
    store.set_state(conn, request.request_id, RequestState.READY, Step.JIRA_READY, "ready",
                    {"instance_id": instance_id, "transitioned": moved, "timings_s": timings(conn, request)})


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


def readable_cause(error: BaseException | None) -> str:
    """One line about what went wrong, without a stack trace or anything secret-looking."""
    if error is None:
        return "the step failed"
    text = " ".join(str(error).split()) or type(error).__name__
    for pattern, replacement in _SECRETISH:
        text = pattern.sub(replacement, text)
    return f"{type(error).__name__}: {text[:300]}"


def record_failure(conn: psycopg.Connection, jira: JiraTicket | None, issue_key: str, run: Run, step: Step,
                   error: BaseException | None, attempt: str) -> None:
    """After the last retry: state ``failed`` at ``step``, a readable Jira comment, the Failed status.

    Only the run that claimed the request reports (or any run before a request exists); a run that does not
    own the request (a stray delivery for a ready ticket, say) changes nothing.
    """
    row = store.get_request(conn, issue_key)
    if row is not None and row["owner_run_id"] != run.run_id:
        log.info("%s failed at %s, but %s is not this run's request: nothing to report", run.run_id, step, issue_key)
        return
    cause = readable_cause(error)
    if row is not None:
        store.set_state(conn, row["request_id"], RequestState.FAILED, step, "failed",
                        {"cause": cause, "attempt": attempt})
    if jira is None:
        return
    comment_once(conn, jira, issue_key, f"failed-{step}-{attempt}",
                 f"Provisioning stopped while {step.title}: {cause}\n"
                 "The platform team can resume it from the Airflow UI once the cause is fixed.")
    try:
        jira.transition_to(issue_key, FAILED_STATUS)
    except Exception as transition_error:  # the comment is what matters to the requester
        log.warning("could not move %s to %s: %s", issue_key, FAILED_STATUS, readable_cause(transition_error))

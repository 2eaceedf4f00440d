"""The ``vdi`` commands: each takes the parsed arguments, the settings and the per-call time limit, and returns a
``Result`` or raises ``CommandError`` with a one-line cause."""

from __future__ import annotations

import json
import os
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from vdi.cli import CommandError, Result

RECONCILE_DAG_ID = "vdi_reconcile"
RECONCILE_REPORT_TASK = "report"
TEST_EVENT = "vdi:webhook_test"


def _required(env: Mapping[str, str], variable: str, given: str | None = None, option: str = "") -> str:
    value = given or env.get(variable)
    if not value:
        raise CommandError(f"{variable} is not set" + (f" (or pass {option})" if option else ""))
    return value


# --- webhook register ----------------------------------------------------------------------------------------
def _secret(args, env: Mapping[str, str]) -> tuple[str, str | None]:
    """The secret to register and, when it is new and not written to a file, the secret to print (else None)."""
    if args.secret_from_env:
        return _required(env, "JIRA_WEBHOOK_SECRET"), None
    if args.secret_file:
        path = Path(args.secret_file)
        if path.exists() and path.read_text().strip():
            return path.read_text().strip(), None
        secret = secrets.token_urlsafe(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)  # an empty file that was there keeps its mode otherwise
            with os.fdopen(fd, "w") as handle:
                handle.write(secret + "\n")
        except OSError as error:
            raise CommandError(f"cannot write the secret to {path}: {error.strerror}") from None
        return secret, None
    secret = secrets.token_urlsafe(32)
    return secret, secret


def _webhook_scope(env: Mapping[str, str], jql: str | None) -> tuple[list[str], str]:
    """The events the bridge's routes need, and the JQL filter (given, else the bridge's or the catalog's
    projects)."""
    from vdi.jira_webhooks import RegistrationError, bridge_scope

    try:
        events, default_jql = bridge_scope(env)
    except RegistrationError as error:
        raise CommandError(str(error)) from None
    return events, jql or default_jql


def webhook_register(args, env: Mapping[str, str], timeout_s: float) -> Result:
    from vdi.check import Missing, jira_connection
    from vdi.jira_webhooks import RegistrationError, save_bridge_webhook, webhook_url

    bridge_url = _required(env, "BRIDGE_URL", args.bridge_url, "--bridge-url")
    events, jql = _webhook_scope(env, args.jql)
    try:
        jira = jira_connection(env)
    except Missing as error:
        raise CommandError(str(error)) from None
    if not jira.login:
        raise CommandError("registering a webhook needs the Jira connection's login (an admin's email) and API token")
    secret, shown = _secret(args, env)
    try:
        saved = save_bridge_webhook(jira.host or "", jira.login, jira.password or "", bridge_url, secret, timeout_s,
                                    events=events, jql=jql)
    except RegistrationError as error:
        raise CommandError(str(error)) from None
    webhook = saved.webhook
    if args.secret_from_env:
        goes = "signed with JIRA_WEBHOOK_SECRET, which the bridge already has"
    elif args.secret_file:
        goes = (f"signed with the secret in {args.secret_file}: the bridge must have it as JIRA_WEBHOOK_SECRET "
                "(keep the one it replaces in JIRA_WEBHOOK_PREVIOUS_SECRETS until Jira's retries are over)")
    else:
        goes = ("signed with the new secret below: set it as the bridge's JIRA_WEBHOOK_SECRET now (keep the one it "
                "replaces in JIRA_WEBHOOK_PREVIOUS_SECRETS); until then the bridge refuses Jira's deliveries and "
                "Jira retries them")
    data = {"action": saved.action, "name": webhook.get("name"), "self": webhook.get("self"),
            "url": webhook_url(bridge_url), "events": events, "jql": jql, "secret_goes_to": goes}
    lines = [f"{saved.action} the Jira webhook {webhook.get('name')!r} ({webhook.get('self')})",
             f"  url     {webhook_url(bridge_url)}", f"  events  {', '.join(events)}", f"  filter  {jql}",
             f"  secret  {goes}"]
    if shown is not None:
        data["secret"] = shown
        lines.append(shown)
    return Result(data, "\n".join(lines))


# --- webhook test --------------------------------------------------------------------------------------------
def webhook_test(args, env: Mapping[str, str], timeout_s: float) -> Result:
    from webhook_bridge.events import IDENTIFIER_HEADER
    from webhook_bridge.signature import SIGNATURE_HEADER, sign

    bridge_url = _required(env, "BRIDGE_URL", args.bridge_url, "--bridge-url").rstrip("/")
    if args.secret_file:
        try:
            secret = Path(args.secret_file).read_text().strip()
        except OSError as error:
            raise CommandError(f"cannot read {args.secret_file}: {error.strerror}") from None
    else:
        secret = _required(env, "JIRA_WEBHOOK_SECRET", None, "--secret-file")
    delivery_id = f"vdi-webhook-test-{uuid.uuid4()}"
    # An event no route takes: the bridge verifies and records it, and starts no run.
    body = json.dumps({"timestamp": int(time.time() * 1000), "webhookEvent": TEST_EVENT}).encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body),
               IDENTIFIER_HEADER: delivery_id, "User-Agent": "vdi-cli"}
    url = f"{bridge_url}/webhooks/jira"
    try:
        answer = requests.post(url, data=body, headers=headers, timeout=timeout_s)
    except requests.RequestException as error:
        raise CommandError(f"the bridge at {url} did not answer ({type(error).__name__})") from None
    try:
        reply = answer.json()
    except ValueError:
        reply = {}
    data = {"url": url, "delivery_id": delivery_id, "http_status": answer.status_code, "answer": reply}
    if answer.status_code == 200 and reply.get("status") in ("ignored", "duplicate"):
        text = (f"the bridge at {url} verified the signature and recorded the test delivery {delivery_id} "
                f"(HTTP 200, {reply.get('status')}: {reply.get('reason') or 'already recorded'})")
        return Result(data, text)
    if answer.status_code == 401:
        cause = f"the bridge at {url} refused the signature (HTTP 401): its JIRA_WEBHOOK_SECRET is not this secret"
    elif answer.status_code == 503:
        cause = f"the bridge at {url} answered HTTP 503: {reply.get('error') or 'unavailable'}"
    else:
        said = reply.get("error") or reply or answer.text[:200]
        cause = f"the bridge at {url} answered HTTP {answer.status_code}: {said}"
    return Result(data, f"test delivery {delivery_id}: {cause}", ok=False, cause=cause)


# --- request show / delivery redispatch ----------------------------------------------------------------------
@contextmanager
def _database(env: Mapping[str, str], timeout_s: float):
    from vdi.check import Missing, app_database

    try:
        with app_database(env, timeout_s) as conn:
            yield conn
    except Missing as error:
        raise CommandError(str(error)) from None


def _when(value) -> str:
    return value.isoformat(timespec="seconds") if hasattr(value, "isoformat") else str(value)


def request_show(args, env: Mapping[str, str], timeout_s: float) -> Result:
    from vdi.request import ISSUE_KEY_PATTERN
    from vdi.store.queries import request_overview

    key = args.issue_key.strip().upper()
    if not re.match(ISSUE_KEY_PATTERN, key):
        raise CommandError(f"{args.issue_key!r} is not a Jira issue key (e.g. VDI-12)")
    with _database(env, timeout_s) as conn:
        found = request_overview(conn, key)
    if found is None:
        raise CommandError(f"no request and no delivery for {key}")
    request, events, deliveries = found["request"], found["events"], found["deliveries"]
    lines = []
    if request is None:
        lines.append(f"{key}: no request yet (deliveries only)")
    else:
        detail = request["detail"] or {}
        broker = detail.get("leostream")
        desktop = (f"pool {broker['pool_name']} (id {broker['pool_id']}), policy {broker['policy_name']} (id "
                   f"{broker['policy_id']}), user {broker['user_login']}, center {broker['center_id']}"
                   if broker else "-")
        lines += [f"{key}: {request['state']} at step {request['step'] or '-'}"
                  f" (run {request['owner_run_id'] or '-'}; updated {_when(request['updated_at'])})",
                  f"  user      {request['desktop_user'] or '-'}; bundle {request['bundle'] or '-'};"
                  f" os {request['os'] or 'default'}",
                  f"  instance  {request['instance_id'] or '-'} (launch generation {request['launch_generation']})",
                  f"  broker    {desktop}"]
        if failure := detail.get("failure"):
            lines.append(f"  failure   at {failure.get('step')}; ticket moved to Failed: "
                         f"{failure.get('ticket_failed')}")
        lines.append("events:")
        lines += [f"  {_when(e['at'])}  {e['step']:<20} {e['outcome']:<16} {json.dumps(e['detail'], default=str)}"
                  for e in events] or ["  none"]
    lines.append("deliveries:")
    lines += [f"  {_when(d['received_at'])}  {d['delivery_id']}  {d['status']}  {d['event']}"
              + (f"  run {d['dag_run_id']}" if d["dag_run_id"] else "")
              + (f"  ({d['reason'] or d['last_error']})" if d["reason"] or d["last_error"] else "")
              for d in deliveries] or ["  none"]
    data = {"issue_key": key, "request": request, "events": events, "deliveries": deliveries}
    return Result(data, "\n".join(lines))


def delivery_redispatch(args, env: Mapping[str, str], timeout_s: float) -> Result:
    from vdi.store.deliveries import requeue, requeue_refusal
    from vdi.store.queries import delivery

    delivery_id = args.delivery_id.strip()
    if not delivery_id:
        raise CommandError("the delivery id is empty")
    with _database(env, timeout_s) as conn:
        if not requeue(conn, delivery_id):
            raise CommandError(requeue_refusal(conn, delivery_id) or f"delivery {delivery_id!r} was not requeued")
        row = delivery(conn, delivery_id)
    data = {"delivery_id": delivery_id, "requeued": True, "status": row["status"], "dag_id": row["dag_id"],
            "dag_run_id": row["dag_run_id"]}
    return Result(data, f"delivery {delivery_id} is due again: the relay triggers {row['dag_id']} run "
                        f"{row['dag_run_id']} (a run that exists already counts as done)")


# --- reconcile -----------------------------------------------------------------------------------------------
def reconcile(args, env: Mapping[str, str], timeout_s: float) -> Result:
    from vdi.cli.airflow_api import AirflowApi, AirflowError

    api = AirflowApi(_required(env, "AIRFLOW_API_URL"), _required(env, "AIRFLOW_USERNAME"),
                     _required(env, "AIRFLOW_PASSWORD"), timeout_s)
    run_id = f"vdi-cli__{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}__{uuid.uuid4().hex[:8]}"
    conf = {"dry_run": bool(args.dry_run)}
    try:
        if api.dag(RECONCILE_DAG_ID).get("is_paused"):
            raise CommandError(f"{RECONCILE_DAG_ID} is paused in Airflow: unpause it, or its run would never start")
        api.trigger(RECONCILE_DAG_ID, conf, run_id, note="vdi reconcile" + (" --dry-run" if args.dry_run else ""))
        run = api.wait(RECONCILE_DAG_ID, run_id, args.wait)
        if run["state"] != "success":
            raise CommandError(f"the run {run_id} of {RECONCILE_DAG_ID} {run['state']}; its task logs in the "
                               "Airflow UI say why")
        report = api.xcom(RECONCILE_DAG_ID, run_id, RECONCILE_REPORT_TASK)
    except AirflowError as error:
        raise CommandError(str(error)) from None
    finally:
        api.close()
    data = {"dag_run_id": run_id, "dry_run": conf["dry_run"], "report": report}
    heading = f"{RECONCILE_DAG_ID} run {run_id} ({'dry run: nothing changed' if args.dry_run else 'applied'}):"
    return Result(data, heading + "\n" + _report_text(report))


def _report_text(report: Any, indent: str = "  ") -> str:
    if not isinstance(report, dict):
        return indent + json.dumps(report, default=str)
    lines = []
    for key, value in report.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines.append(_report_text(value, indent + "  ") if value else f"{indent}  none")
        else:
            lines.append(f"{indent}{key}: {json.dumps(value, default=str)}")
    return "\n".join(lines)


# --- check ---------------------------------------------------------------------------------------------------
def check(args, env: Mapping[str, str], timeout_s: float) -> Result:
    from vdi.check import check_all

    verdicts = check_all(env, timeout_s=timeout_s)
    failed = [v for v in verdicts if not v.ok]
    data: dict[str, Any] = {"ok": not failed, "verdicts": [v.as_dict() for v in verdicts]}
    text = "\n".join(v.line() for v in verdicts)
    if failed:
        return Result(data, text, ok=False, cause=f"check failed: {failed[0].system}: {failed[0].detail}")
    return Result(data, text)

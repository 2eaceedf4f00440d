"""``vdi``: the operator's console script.

    vdi webhook register     create or update the bridge's Jira webhook, with a new or given secret
    vdi webhook test         send a signed test delivery through the bridge and report its answer
    vdi request show KEY     a ticket's request: state, instance, broker desktop, event log, deliveries
    vdi delivery redispatch ID   make a failed or pending delivery due again for the relay
    vdi reconcile [--dry-run]    trigger vdi_reconcile over Airflow's REST API, wait, print its report
    vdi check                one verdict per system: database, Jira, Leostream, AWS

Settings come from the environment (the ``stack.env`` keys, ``AIRFLOW_CONN_*``, ``VDI_*``), optionally from a
``--env-file`` underneath it. Human output by default, ``--json`` for scripts; a failure exits 1 with a one-line
cause on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class CommandError(Exception):
    """A command could not do what was asked; the message is the one-line cause."""


@dataclass
class Result:
    """What a command did: ``data`` for ``--json``, ``text`` for people; ``ok`` False exits 1 with ``cause``."""

    data: Any
    text: str
    ok: bool = True
    cause: str = ""


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines (as ``.local/stack.env`` holds them); blank lines and ``#`` comments skipped."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror}") from None
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return {key.strip(): value for key, value in (pair for pair in pairs if len(pair) == 2)}


def settings_env(env_file: str | None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The settings the command works with: the environment over the ``--env-file``."""
    merged = read_env_file(Path(env_file)) if env_file else {}
    merged.update(os.environ if environ is None else environ)
    return merged


# --- commands ------------------------------------------------------------------------------------------------
def _commands():
    from vdi.cli import commands

    return commands


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print a JSON document instead of text")
    common.add_argument("--env-file", default=argparse.SUPPRESS, metavar="PATH",
                        help="KEY=value settings (e.g. .local/stack.env); the environment wins over them")
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS, metavar="SECONDS",
                        help="time limit of each call to a service (default 10)")
    parser = argparse.ArgumentParser(prog="vdi", parents=[common],
                                     description="Operate VDI Studios: the Jira webhook, requests, deliveries, "
                                                 "the reconciler and the connection checks.")
    groups = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    webhook = groups.add_parser("webhook", help="the bridge's Jira admin webhook").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    register = webhook.add_parser("register", parents=[common],
                                  help="create or update the bridge's Jira webhook (never a second one)")
    register.add_argument("--bridge-url", help="the bridge's public base URL (default: $BRIDGE_URL)")
    secret = register.add_mutually_exclusive_group()
    secret.add_argument("--secret-from-env", action="store_true",
                        help="sign with $JIRA_WEBHOOK_SECRET, the bridge's current secret")
    secret.add_argument("--secret-file", metavar="PATH",
                        help="sign with the secret in PATH; when PATH is missing or empty, write a new one there "
                             "(mode 600)")
    register.add_argument("--jql", help="the webhook's JQL filter (default: the catalog's projects)")
    register.set_defaults(handler="webhook_register")
    test = webhook.add_parser("test", parents=[common], help="send a signed test delivery through the bridge")
    test.add_argument("--bridge-url", help="the bridge's base URL (default: $BRIDGE_URL)")
    test.add_argument("--secret-file", metavar="PATH", help="the secret to sign with (default: $JIRA_WEBHOOK_SECRET)")
    test.set_defaults(handler="webhook_test")

    request = groups.add_parser("request", help="desktop requests").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    show = request.add_parser("show", parents=[common],
                              help="a ticket's request: state, instance, broker desktop, event log, deliveries")
    show.add_argument("issue_key", metavar="KEY", help="the Jira issue key, e.g. VDI-12")
    show.set_defaults(handler="request_show")

    delivery = groups.add_parser("delivery", help="webhook deliveries").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    redispatch = delivery.add_parser("redispatch", parents=[common],
                                     help="make a failed or pending delivery due again; the relay triggers it")
    redispatch.add_argument("delivery_id", metavar="ID", help="the delivery id (X-Atlassian-Webhook-Identifier)")
    redispatch.set_defaults(handler="delivery_redispatch")

    reconcile = groups.add_parser("reconcile", parents=[common],
                                  help="trigger vdi_reconcile in Airflow, wait for it and print its report")
    reconcile.add_argument("--dry-run", action="store_true", help="report what it would do; change nothing")
    reconcile.add_argument("--wait", type=float, default=600, metavar="SECONDS",
                           help="how long to wait for the run to finish (default 600)")
    reconcile.set_defaults(handler="reconcile")

    check = groups.add_parser("check", parents=[common],
                              help="check the database, Jira, Leostream and AWS; one verdict per system")
    check.set_defaults(handler="check")
    return parser


def _print_failure(cause: str, as_json: bool, data: Any = None) -> None:
    if as_json:
        print(json.dumps({"ok": False, "error": cause, **({"result": data} if data is not None else {})},
                         default=str, indent=2))
    print(f"vdi: {cause}", file=sys.stderr)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    as_json = getattr(args, "json", False)
    # Airflow's loggers print to stdout, at INFO: keep stdout for the command's own output (--json parses).
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    try:
        env = settings_env(getattr(args, "env_file", None), environ)
        handler: Callable[..., Result] = getattr(_commands(), args.handler)
        with contextlib.redirect_stdout(sys.stderr):
            result = handler(args, env, getattr(args, "timeout", 10.0))
    except CommandError as error:
        _print_failure(str(error), as_json)
        return 1
    except KeyboardInterrupt:
        print("vdi: interrupted", file=sys.stderr)
        return 130
    if not result.ok:
        if not as_json:
            print(result.text)
        _print_failure(result.cause, as_json, result.data)
        return 1
    print(json.dumps(result.data, default=str, indent=2) if as_json else result.text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

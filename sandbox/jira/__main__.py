"""``python -m sandbox.jira [--host H] [--port P]``: run the Jira sandbox.

Settings come from the environment: ``JIRA_URL`` (its own base URL; the port defaults to it), ``JIRA_USER`` and
``JIRA_TOKEN`` (the Basic-auth email and API token it accepts), ``JIRA_PAT`` (Bearer token; defaults to the API
token), ``JIRA_SANDBOX_SEED`` (seed data file), ``JIRA_SANDBOX_WEBHOOK_DELAY_SCALE`` (multiplies Jira's 5-15 min
retry delays; default 0.01) and ``JIRA_SANDBOX_WEBHOOK_TIMEOUT_S`` (default 10).
"""

from __future__ import annotations

import os
import sys

from sandbox import server
from sandbox.jira.app import create_app

DEFAULT_URL = "http://127.0.0.1:8081"


def build_app():
    env = os.environ
    return create_app({
        "JIRA_URL": env.get("JIRA_URL", DEFAULT_URL),
        "JIRA_USER": env.get("JIRA_USER", "vdi-bot@studio.example"),
        "JIRA_TOKEN": env.get("JIRA_TOKEN", ""),
        "JIRA_PAT": env.get("JIRA_PAT"),
        "SEED_PATH": env.get("JIRA_SANDBOX_SEED"),
        "WEBHOOK_DELAY_SCALE": float(env.get("JIRA_SANDBOX_WEBHOOK_DELAY_SCALE", "0.01")),
        "WEBHOOK_TIMEOUT_S": float(env.get("JIRA_SANDBOX_WEBHOOK_TIMEOUT_S", "10")),
        # Issues live in memory; a restarted stack continues the numbering so keys never repeat.
        "FIRST_ISSUE_NUMBER": int(env.get("JIRA_SANDBOX_FIRST_ISSUE", "1")),
    })


def main(argv: list[str] | None = None) -> int:
    return server.main("sandbox.jira", __doc__, os.environ.get("JIRA_URL", DEFAULT_URL), 8081, build_app, argv)


if __name__ == "__main__":
    sys.exit(main())

"""``python -m sandbox.jira [--host H] [--port P]``: run the Jira sandbox.

Settings come from the environment: ``JIRA_URL`` (its own base URL; the port defaults to it), ``JIRA_USER`` and
``JIRA_TOKEN`` (the Basic-auth email and API token it accepts), ``JIRA_PAT`` (Bearer token; defaults to the API
token), ``JIRA_SANDBOX_SEED`` (seed data file), ``JIRA_SANDBOX_WEBHOOK_DELAY_SCALE`` (multiplies Jira's 5-15 min
retry delays; default 0.01) and ``JIRA_SANDBOX_WEBHOOK_TIMEOUT_S`` (default 10).
"""

from __future__ import annotations

import argparse
import os
import sys
from urllib.parse import urlsplit

from sandbox import faults
from sandbox.jira.app import create_app


def main(argv: list[str] | None = None) -> int:
    env = os.environ
    base_url = env.get("JIRA_URL", "http://127.0.0.1:8081")
    parser = argparse.ArgumentParser(prog="python -m sandbox.jira", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=urlsplit(base_url).port or 8081)
    args = parser.parse_args(argv)
    try:
        app = create_app({
            "JIRA_URL": base_url,
            "JIRA_USER": env.get("JIRA_USER", "vdi-bot@studio.example"),
            "JIRA_TOKEN": env.get("JIRA_TOKEN", ""),
            "JIRA_PAT": env.get("JIRA_PAT"),
            "SEED_PATH": env.get("JIRA_SANDBOX_SEED"),
            "WEBHOOK_DELAY_SCALE": float(env.get("JIRA_SANDBOX_WEBHOOK_DELAY_SCALE", "0.01")),
            "WEBHOOK_TIMEOUT_S": float(env.get("JIRA_SANDBOX_WEBHOOK_TIMEOUT_S", "10")),
            # Issues live in memory; a restarted stack continues the numbering so keys never repeat.
            "FIRST_ISSUE_NUMBER": int(env.get("JIRA_SANDBOX_FIRST_ISSUE", "1")),
        })
    except (ValueError, OSError) as error:
        print(f"sandbox.jira: {error}", file=sys.stderr)
        return 2
    faults.serve(app, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())

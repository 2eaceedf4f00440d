"""Run a command with the stack's runtime environment: ``python -m sandbox.stack.exec ENV.json CMD...``.

supervisord's own ``environment=`` cannot carry JSON values (the ``AIRFLOW_CONN_*`` connections), so each
program starts through this and replaces itself with the real command.
"""

import json
import os
import sys


def main() -> None:
    env_file, *command = sys.argv[1:]
    if not command:
        sys.exit("usage: python -m sandbox.stack.exec ENV.json COMMAND [ARG...]")
    with open(env_file) as handle:
        os.environ.update(json.load(handle))
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()

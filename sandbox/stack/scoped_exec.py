"""Run a process of the webhook bridge with only what it may see: ``python -m sandbox.stack.scoped_exec PROGRAM
COMMAND...``.

Unlike ``sandbox.stack.exec`` (the stack's whole runtime environment on top of supervisord's), the command gets a
fresh environment, ``programs.bridge_environment``, computed from the same settings as the launcher's.
"""

import os
import sys

from sandbox.stack.programs import BRIDGE_PROCESS_SECRETS, bridge_environment
from sandbox.stack.settings import StackSettings


def main() -> None:
    program, *command = sys.argv[1:] or [""]
    if program not in BRIDGE_PROCESS_SECRETS or not command:
        sys.exit(f"usage: python -m sandbox.stack.scoped_exec {{{','.join(BRIDGE_PROCESS_SECRETS)}}} COMMAND [ARG...]")
    os.execvpe(command[0], command, bridge_environment(StackSettings.from_environment(), program))


if __name__ == "__main__":
    main()

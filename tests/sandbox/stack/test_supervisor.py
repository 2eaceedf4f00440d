"""The stack's supervisord (``sandbox.stack.supervisor``), run for real with a stand-in program."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from sandbox.stack.settings import StackSettings
from sandbox.stack.supervisor import START_RETRIES, Program, Supervisor
from tests.conftest import wait_until

# Exits at once (as a program does whose database is still restarting) until ``fail_first`` starts are counted in
# the file beside it, then runs.
FLAKY = """
import pathlib, sys, time
count = pathlib.Path(sys.argv[1])
starts = int(count.read_text() or 0) + 1 if count.exists() else 1
count.write_text(str(starts))
if starts <= int(sys.argv[2]):
    sys.exit(1)
while True:
    time.sleep(60)
"""


@pytest.fixture
def supervisor(tmp_path):
    settings = StackSettings.from_environment({"VDI_LOCAL_DIR": str(tmp_path / "local"), "PATH": os.environ["PATH"]})
    settings.logs_dir.mkdir(parents=True)
    supervisor = Supervisor(settings)
    yield supervisor
    supervisor.shutdown()


def _status(supervisor: Supervisor, name: str) -> str:
    return supervisor.ctl("status", name, check=False).stdout.split()[1]


def test_a_program_killed_is_started_again_and_outlasts_a_few_failed_starts(supervisor, tmp_path):
    """What a PostgreSQL restart does to a program that dies with it: it exits, then fails its first starts."""
    count, script = tmp_path / "starts", tmp_path / "flaky.py"
    script.write_text(FLAKY)
    program = Program("flaky", [sys.executable, str(script), str(count), "0"], with_runtime_env=False)
    supervisor.write_config([program])
    supervisor.start_daemon()
    supervisor.start(program)
    wait_until(lambda: _status(supervisor, "flaky") == "RUNNING", 30, "the program running")

    count.write_text(str(-START_RETRIES))  # its next START_RETRIES starts fail
    pid = int(supervisor.ctl("pid", "flaky").stdout)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: supervisor.ctl("pid", "flaky", check=False).stdout.strip() not in ("0", str(pid))
               and _status(supervisor, "flaky") == "RUNNING", 60, "the program started again")
    assert int(count.read_text()) == 1  # START_RETRIES failed starts, then the one that runs

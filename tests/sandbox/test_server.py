"""sandbox/server.py: the sandboxes' shared command line (``python -m sandbox.jira`` / ``sandbox.leostream``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import requests

from sandbox import server
from sandbox.jira.app import create_app
from sandbox.stack.settings import REPO_ROOT
from tests.conftest import free_port, wait_until


def test_a_sandbox_missing_a_setting_exits_2_with_one_line_on_stderr(capsys):
    assert server.main("sandbox.jira", "", None, 8081, lambda: create_app({}), argv=[]) == 2
    assert capsys.readouterr().err == "sandbox.jira: the Jira sandbox needs JIRA_TOKEN (the API token it accepts)\n"


def test_a_sandbox_listens_on_the_port_of_its_url_and_exits_cleanly_on_sigterm(tmp_path):
    port = free_port()
    env = {**os.environ, "JIRA_URL": f"http://127.0.0.1:{port}", "JIRA_TOKEN": "cli-test-token"}
    with open(tmp_path / "jira.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "sandbox.jira"], cwd=REPO_ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        def answers() -> bool:
            assert process.poll() is None, (tmp_path / "jira.log").read_text()
            try:
                return requests.get(f"http://127.0.0.1:{port}/rest/api/2/serverInfo", timeout=2).ok
            except requests.ConnectionError:
                return False

        wait_until(answers, timeout_s=30, message="the Jira sandbox to answer on its URL's port")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

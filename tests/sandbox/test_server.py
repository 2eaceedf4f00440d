"""sandbox/server.py: the sandboxes' shared command line (``python -m sandbox.jira`` / ``sandbox.leostream``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from sandbox import server
from sandbox.jira.app import create_app
from sandbox.stack.settings import REPO_ROOT
from tests.conftest import free_port, wait_until
from tests.sandbox.jira.conftest import ALICE
from tests.sandbox.servers import serving

TOKEN = "cli-test-token"


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


def _refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True


def test_an_outage_refuses_connections_cuts_open_ones_and_keeps_the_state_when_the_port_listens_again():
    with serving(lambda url: create_app({"JIRA_URL": url, "JIRA_TOKEN": TOKEN})) as (url, app):
        port = int(url.rsplit(":", 1)[1])
        http = requests.Session()
        http.auth = ("vdi-bot@studio.example", TOKEN)
        key = http.post(f"{url}/rest/api/2/issue", json={"fields": {
            "project": {"key": "VDI"}, "issuetype": {"name": "Desktop Request"}, "summary": "kept",
            "customfield_10050": {"value": "gpu"}, "customfield_10051": {"accountId": ALICE}}}, timeout=5).json()["key"]
        in_flight = {}

        def slow_call():  # a call in flight when the sandbox goes down
            try:
                in_flight["answer"] = http.get(f"{url}/rest/api/2/issue/{key}", timeout=10)
            except requests.ConnectionError as error:
                in_flight["error"] = error

        requests.post(f"{url}/_sandbox/faults", json={"path": "/rest/api/2/issue/*", "latency_ms": 2000},
                      timeout=5).raise_for_status()
        caller = threading.Thread(target=slow_call)
        caller.start()
        wait_until(lambda: requests.get(f"{url}/_sandbox/faults", timeout=5).json()[0]["hits"] == 1, 5,
                   "the slow call to arrive")
        started = time.monotonic()  # before the ask: the outage's 3 s start after it
        answer = requests.post(f"{url}/_sandbox/outage", json={"seconds": 3}, timeout=5)
        assert answer.status_code == 202
        assert _refuses(port)
        with pytest.raises(requests.ConnectionError, match="Connection refused"):
            http.get(f"{url}/rest/api/2/issue/{key}", timeout=5)
        caller.join(timeout=10)
        assert "error" in in_flight, "the call in flight was answered through the outage"

        wait_until(lambda: not _refuses(port), timeout_s=10, message="the port to listen again")
        assert time.monotonic() - started >= 3
        assert http.get(f"{url}/rest/api/2/issue/{key}", timeout=5).json()["fields"]["summary"] == "kept"
        app.extensions["jira_dispatcher"].stop()


def test_an_outage_is_asked_for_in_seconds_and_ends_early_on_request():
    with serving(lambda url: create_app({"JIRA_URL": url, "JIRA_TOKEN": TOKEN})) as (url, app):
        port = int(url.rsplit(":", 1)[1])
        for bad in ({}, {"seconds": 0}, {"seconds": "60"}, {"seconds": 7200}):
            assert requests.post(f"{url}/_sandbox/outage", json=bad, timeout=5).status_code == 400
        assert not _refuses(port)
        requests.post(f"{url}/_sandbox/outage", json={"seconds": 600}, timeout=5).raise_for_status()
        assert _refuses(port)
        app.extensions["sandbox_listener"].end_outage()  # what SIGUSR1 does in `python -m sandbox.jira`
        wait_until(lambda: not _refuses(port), timeout_s=10, message="the port to listen again")
        app.extensions["jira_dispatcher"].stop()


def test_a_sandbox_process_goes_down_and_back_with_its_issues_and_sigusr1_ends_an_outage(tmp_path):
    port = free_port()
    env = {**os.environ, "JIRA_URL": f"http://127.0.0.1:{port}", "JIRA_TOKEN": TOKEN}
    with open(tmp_path / "jira.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "sandbox.jira"], cwd=REPO_ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: not _refuses(port), timeout_s=30, message="the Jira sandbox to listen")
        auth = ("vdi-bot@studio.example", TOKEN)
        key = requests.post(f"{url}/rest/api/2/issue", auth=auth, timeout=5, json={"fields": {
            "project": {"key": "VDI"}, "issuetype": {"name": "Desktop Request"}, "summary": "survives",
            "customfield_10050": {"value": "gpu"}, "customfield_10051": {"accountId": ALICE}}}).json()["key"]
        requests.post(f"{url}/_sandbox/outage", json={"seconds": 600}, timeout=5).raise_for_status()
        assert _refuses(port) and process.poll() is None
        process.send_signal(signal.SIGUSR1)
        wait_until(lambda: not _refuses(port), timeout_s=10, message="SIGUSR1 to end the outage")
        assert requests.get(f"{url}/rest/api/2/issue/{key}", auth=auth, timeout=5).json()["key"] == key
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

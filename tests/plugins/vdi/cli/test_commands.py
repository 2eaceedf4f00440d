"""``vdi`` commands against real parts: the Jira sandbox in-process, a real bridge on a real PostgreSQL, the store."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.sandbox.jira.conftest import API_TOKEN, API_USER
from tests.sandbox.servers import serving
from tests.webhook_bridge.conftest import SECRET, bridge_config, make_app  # noqa: F401
from vdi.jira_webhooks import WEBHOOK_NAME

BRIDGE = "https://bridge.studio.example"


def jira_env(jira, **more) -> dict[str, str]:
    return {"AIRFLOW_CONN_JIRA_DEFAULT": json.dumps({"conn_type": "jira", "host": jira.url, "login": API_USER,
                                                     "password": API_TOKEN}),
            "BRIDGE_URL": BRIDGE, **more}


def webhooks(jira) -> list[dict]:
    return jira.http.get(f"{jira.url}/rest/webhooks/1.0/webhook").json()


def stored_secret(jira, webhook: dict) -> str:
    """The secret Jira signs with (Jira's API never shows it: read from the sandbox's state)."""
    return jira.app.extensions["jira_site"].webhooks[int(webhook["self"].rsplit("/", 1)[1])]["secret"]


# --- console script ------------------------------------------------------------------------------------------
def test_the_installed_console_script_lists_every_command():
    script = Path(sys.executable).with_name("vdi")
    shown = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=True).stdout

    for command in ("webhook", "request", "delivery", "reconcile", "check"):
        assert command in shown


def test_a_missing_setting_exits_1_with_one_line(vdi):
    result = vdi({}, "webhook", "register")

    assert result.code == 1
    assert result.err == "vdi: BRIDGE_URL is not set (or pass --bridge-url)\n"
    assert result.out == ""


# --- webhook register ----------------------------------------------------------------------------------------
def test_register_twice_leaves_one_webhook_updated_with_the_new_secret(vdi, jira):
    first = vdi(jira_env(jira), "webhook", "register", "--json")
    second = vdi(jira_env(jira), "webhook", "register", "--json")

    assert first.code == second.code == 0, first.err + second.err
    created, updated = json.loads(first.out), json.loads(second.out)
    assert (created["action"], updated["action"]) == ("created", "updated")
    [webhook] = webhooks(jira)
    assert webhook["name"] == WEBHOOK_NAME
    assert webhook["url"] == f"{BRIDGE}/webhooks/jira"
    assert webhook["events"] == ["jira:issue_created", "jira:issue_updated"]
    assert webhook["filters"] == {"issue-related-events-section": "project = VDI"}
    assert created["secret"] != updated["secret"]
    assert stored_secret(jira, webhook) == updated["secret"]
    assert first.err == second.err == ""


def test_register_finds_the_bridges_webhook_by_its_url_under_another_name(vdi, jira):
    from tests.sandbox.jira.test_webhooks import register

    register(jira, f"{BRIDGE}/webhooks/jira", name="set up by hand")

    assert vdi(jira_env(jira), "webhook", "register", "--secret-from-env").code == 1  # no JIRA_WEBHOOK_SECRET
    result = vdi(jira_env(jira, JIRA_WEBHOOK_SECRET="the-bridges-secret"), "webhook", "register",
                 "--secret-from-env")

    assert result.code == 0, result.err
    [webhook] = webhooks(jira)
    assert webhook["name"] == WEBHOOK_NAME
    assert stored_secret(jira, webhook) == "the-bridges-secret"
    assert "the-bridges-secret" not in result.out
    assert result.out.startswith(f"updated the Jira webhook '{WEBHOOK_NAME}'")


def test_register_with_a_secret_file_writes_it_private_once_and_reuses_it(vdi, jira, tmp_path):
    secret_file = tmp_path / "webhook.secret"

    first = vdi(jira_env(jira), "webhook", "register", "--secret-file", str(secret_file))
    second = vdi(jira_env(jira), "webhook", "register", "--secret-file", str(secret_file))

    assert first.code == second.code == 0
    secret = secret_file.read_text().strip()
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    [webhook] = webhooks(jira)
    assert stored_secret(jira, webhook) == secret
    assert secret not in first.out + first.err + second.out + second.err


def test_register_takes_its_events_from_the_bridges_routes_and_the_stack_env_file(vdi, jira, tmp_path):
    routes = [{"dag_id": "vdi_provision", "moved_to": ["Approved"]},
              {"dag_id": "vdi_audit", "events": ["comment_created"]}]
    env_file = tmp_path / "stack.env"
    env_file.write_text(f"JIRA_URL={jira.url}\nJIRA_USER={API_USER}\nJIRA_TOKEN={API_TOKEN}\nBRIDGE_URL={BRIDGE}\n")

    result = vdi({"BRIDGE_ROUTES": json.dumps(routes)}, "webhook", "register", "--env-file", str(env_file),
                 "--jql", "project = VDI AND issuetype = 'Desktop Request'")

    assert result.code == 0, result.err
    [webhook] = webhooks(jira)
    assert webhook["events"] == ["comment_created", "jira:issue_created", "jira:issue_updated"]
    assert webhook["filters"]["issue-related-events-section"] == "project = VDI AND issuetype = 'Desktop Request'"


def test_register_refused_by_jira_exits_1_and_creates_nothing(vdi, jira):
    env = jira_env(jira)
    env["AIRFLOW_CONN_JIRA_DEFAULT"] = json.dumps({"conn_type": "jira", "host": jira.url, "login": API_USER,
                                                   "password": "wrong-token"})

    result = vdi(env, "webhook", "register", "--json")

    assert result.code == 1
    assert json.loads(result.out) == {"ok": False, "error": "Jira refused to list webhooks: HTTP 401 You are not "
                                                            "authenticated. Authentication required to perform "
                                                            "this operation."}
    assert result.err.count("\n") == 1
    assert webhooks(jira) == []


# --- webhook test --------------------------------------------------------------------------------------------
@pytest.fixture
def bridge_url(make_app, bridge_config, app_database_url):  # noqa: F811
    with serving(lambda url: make_app(bridge_config)) as (url, _):
        yield url


def test_webhook_test_is_verified_and_recorded_by_the_bridge_and_starts_nothing(vdi, bridge_url, app_database_url):
    result = vdi({"BRIDGE_URL": bridge_url, "JIRA_WEBHOOK_SECRET": SECRET}, "webhook", "test", "--json")

    assert result.code == 0, result.err
    answer = json.loads(result.out)
    assert answer["http_status"] == 200
    assert answer["answer"]["status"] == "ignored"
    with psycopg.connect(app_database_url) as conn:
        status, dag_id = conn.execute("SELECT status, dag_id FROM deliveries WHERE delivery_id = %s",
                                      (answer["delivery_id"],)).fetchone()
    assert (status, dag_id) == ("ignored", None)


def test_webhook_test_with_another_secret_exits_1_naming_the_secret(vdi, bridge_url):
    result = vdi({"BRIDGE_URL": bridge_url, "JIRA_WEBHOOK_SECRET": "not-the-bridges"}, "webhook", "test")

    assert result.code == 1
    assert result.err == (f"vdi: the bridge at {bridge_url}/webhooks/jira refused the signature (HTTP 401): its "
                          "JIRA_WEBHOOK_SECRET is not this secret\n")
    assert "not-the-bridges" not in result.out + result.err


# --- request show --------------------------------------------------------------------------------------------
def a_request_with_history(database_url: str, issue_key: str = "VDI-9") -> None:
    from tests.plugins.vdi.test_leostream import desktop_request
    from vdi.states import DeliveryStatus, Run
    from vdi.store import deliveries
    from vdi.store import requests as store

    request = desktop_request(issue_key)
    with psycopg.connect(database_url, autocommit=True) as conn:
        deliveries.record(conn, deliveries.NewDelivery(
            "d-100", False, "jira:issue_updated", issue_key, {"webhookEvent": "jira:issue_updated"},
            DeliveryStatus.PENDING, dag_id="vdi_provision", dag_run_id=f"{issue_key}__jira__d-100"))
        deliveries.mark_dispatched(conn, ["d-100"])
        assert store.claim(conn, request, Run(f"{issue_key}__jira__d-100"), "Approved").proceed
        store.set_instance(conn, request.request_id, "i-0123456789abcdef0", {"generation": 0})
        store.merge_detail(conn, request.request_id, {"leostream": {
            "user_login": "alice", "policy_id": 3, "policy_name": "vdi-alice", "pool_id": 7,
            "pool_name": f"vdi-{issue_key}", "assignment_id": 11, "center_id": 1}})


def test_request_show_gives_state_instance_broker_desktop_events_and_deliveries(vdi, app_database_url):
    a_request_with_history(app_database_url)

    result = vdi({"VDI_DATABASE_URL": app_database_url}, "request", "show", "vdi-9")

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("VDI-9: in_progress at step launch_instance (run VDI-9__jira__d-100;")
    assert "  instance  i-0123456789abcdef0 (launch generation 0)" in lines
    assert "  broker    pool vdi-VDI-9 (id 7), policy vdi-alice (id 3), user alice, center 1" in lines
    events = lines[lines.index("events:") + 1:lines.index("deliveries:")]
    assert [line.split()[1:3] for line in events] == [["persist", "claimed"], ["launch_instance", "launched"]]
    assert any("d-100  dispatched  jira:issue_updated  run VDI-9__jira__d-100" in line for line in lines)


def test_request_show_json_parses(vdi, app_database_url):
    a_request_with_history(app_database_url)

    shown = json.loads(vdi({"VDI_DATABASE_URL": app_database_url}, "--json", "request", "show", "VDI-9").out)

    assert shown["request"]["state"] == "in_progress"
    assert [e["outcome"] for e in shown["events"]] == ["claimed", "launched"]
    assert shown["deliveries"][0]["delivery_id"] == "d-100"


@pytest.mark.parametrize(("key", "cause"), [("VDI-404", "no request and no delivery for VDI-404"),
                                            ("not a key", "'not a key' is not a Jira issue key (e.g. VDI-12)")])
def test_request_show_of_an_unknown_or_bad_key_exits_1_with_one_line(vdi, app_database_url, key, cause):
    result = vdi({"VDI_DATABASE_URL": app_database_url}, "request", "show", key)

    assert (result.code, result.err, result.out) == (1, f"vdi: {cause}\n", "")


def test_an_unreachable_database_exits_1_with_one_line(vdi):
    from tests.conftest import free_port

    result = vdi({"VDI_DATABASE_URL": f"postgresql://vdi@127.0.0.1:{free_port()}/vdi"}, "request", "show", "VDI-1")

    assert result.code == 1
    assert result.err.startswith("vdi: cannot connect to the app database: ")
    assert result.err.count("\n") == 1


# --- delivery redispatch -------------------------------------------------------------------------------------
def test_redispatch_makes_a_failed_delivery_pending_and_due(vdi, app_database_url):
    from vdi.states import DeliveryStatus
    from vdi.store import deliveries

    with psycopg.connect(app_database_url, autocommit=True) as conn:
        deliveries.record(conn, deliveries.NewDelivery("d-7", False, "jira:issue_updated", "VDI-7", {},
                                                       DeliveryStatus.PENDING, dag_id="vdi_provision",
                                                       dag_run_id="VDI-7__jira__d-7"))
        deliveries.mark_failed(conn, "d-7", "HTTP 400: conf fails the params")

        result = vdi({"VDI_DATABASE_URL": app_database_url}, "delivery", "redispatch", "d-7", "--json")

        assert result.code == 0, result.err
        assert json.loads(result.out)["requeued"] is True
        assert deliveries.get_status(conn, "d-7") == DeliveryStatus.PENDING
        assert [d.delivery_id for d in deliveries.claim_due(conn, 5)] == ["d-7"]


def test_redispatch_of_a_dispatched_or_unknown_delivery_exits_1_and_changes_nothing(vdi, app_database_url):
    a_request_with_history(app_database_url)
    env = {"VDI_DATABASE_URL": app_database_url}

    dispatched = vdi(env, "delivery", "redispatch", "d-100")
    unknown = vdi(env, "delivery", "redispatch", "d-nope")

    assert dispatched.code == unknown.code == 1
    # The words are vdi.store.deliveries.requeue_refusal's, on one line.
    assert dispatched.err.startswith("vdi: delivery 'd-100' was dispatched already (run VDI-9__jira__d-100")
    assert unknown.err.startswith("vdi: no delivery 'd-nope'")
    assert dispatched.err.count("\n") == unknown.err.count("\n") == 1
    with psycopg.connect(app_database_url) as conn:
        assert conn.execute("SELECT status FROM deliveries WHERE delivery_id = 'd-100'").fetchone()[0] == "dispatched"


# --- check ---------------------------------------------------------------------------------------------------
def test_check_prints_one_verdict_per_system_and_json_parses(vdi, services_env):
    human = vdi(services_env, "check")
    # The installed script in a process of its own: its stdout is the JSON document alone.
    machine = subprocess.run([str(Path(sys.executable).with_name("vdi")), "check", "--json"], capture_output=True,
                             text=True, timeout=120, env={**os.environ, **services_env})

    assert human.code == machine.returncode == 0, human.out + human.err + machine.stderr
    assert [line.split(":")[0:2] for line in human.out.splitlines()] == [
        ["database", " ok"], ["jira", " ok"], ["leostream", " ok"], ["aws", " ok"]]
    parsed = json.loads(machine.stdout)
    assert parsed["ok"] is True
    assert [v["system"] for v in parsed["verdicts"]] == ["database", "jira", "leostream", "aws"]


def test_check_failing_exits_1_naming_what_is_missing_in_one_line(vdi, services_env):
    result = vdi({**services_env, "VDI_JIRA_USER_FIELD": "Desktop Owner"}, "check")

    assert result.code == 1
    # (in-process, Airflow's own INFO logs may precede it on stderr; the command's process runs them at WARNING)
    assert result.err.splitlines()[-1] == \
        "vdi: check failed: jira: Jira has no field 'Desktop Owner' (VDI_JIRA_USER_FIELD)"
    assert "jira: FAILED: Jira has no field 'Desktop Owner'" in result.out

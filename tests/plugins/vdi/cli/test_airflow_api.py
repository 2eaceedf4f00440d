"""``vdi reconcile`` over Airflow's REST API v2, against a small fake of the documented endpoints it calls
(``/auth/token``, the DAG, its runs, a task's XCom entry) served over real HTTP. The real DAG and API server are
the end-to-end suite's."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from flask import Flask, jsonify, request

from tests.sandbox.servers import serving

PASSWORD = "airflow-pw-never-shown"
REPORT = {"dry_run": True, "deliveries": {"redispatched": 1, "dead_lettered": 0}, "lost_webhooks": {"found": 0},
          "drift": {}, "stuck": {"requests": 0}}


@dataclass
class FakeAirflow:
    """The endpoints and their answers, as Airflow 3's public API gives them."""

    url: str = ""
    paused: bool = False
    states: list[str] = field(default_factory=lambda: ["queued", "success"])
    triggered: list[dict] = field(default_factory=list)
    # The native XCom answer gives what the column holds: the document, or its JSON text (XCom.serialize_value).
    report_as_text: bool = False

    def app(self) -> Flask:
        app = Flask("fake-airflow")

        @app.post("/auth/token")
        def token():
            body = request.get_json()
            if body != {"username": "vdi", "password": PASSWORD}:
                return jsonify({"detail": "Invalid credentials"}), 401
            return jsonify({"access_token": "token-1"}), 201

        @app.before_request
        def bearer():
            if request.path.startswith("/api/") and request.headers.get("Authorization") != "Bearer token-1":
                return jsonify({"detail": "Not authenticated"}), 401
            return None

        @app.get("/api/v2/dags/<dag_id>")
        def dag(dag_id):
            if dag_id != "vdi_reconcile":
                return jsonify({"detail": f"The Dag with ID: `{dag_id}` was not found"}), 404
            return jsonify({"dag_id": dag_id, "is_paused": self.paused})

        @app.post("/api/v2/dags/<dag_id>/dagRuns")
        def trigger(dag_id):
            self.triggered.append(request.get_json())
            return jsonify({"dag_run_id": request.get_json()["dag_run_id"], "state": "queued"})

        @app.get("/api/v2/dags/<dag_id>/dagRuns/<run_id>")
        def run(dag_id, run_id):
            state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
            return jsonify({"dag_run_id": run_id, "state": state})

        @app.get("/api/v2/dags/<dag_id>/dagRuns/<run_id>/taskInstances/<task_id>/xcomEntries/<key>")
        def xcom(dag_id, run_id, task_id, key):
            assert (task_id, key) == ("report", "return_value")
            value = json.dumps(REPORT) if self.report_as_text else REPORT
            return jsonify({"key": key, "value": value, "task_id": task_id, "dag_id": dag_id, "run_id": run_id})

        return app


@pytest.fixture
def airflow():
    fake = FakeAirflow()
    with serving(lambda url: fake.app()) as (url, _):
        fake.url = url
        yield fake


def env(airflow: FakeAirflow, password: str = PASSWORD) -> dict[str, str]:
    return {"AIRFLOW_API_URL": airflow.url, "AIRFLOW_USERNAME": "vdi", "AIRFLOW_PASSWORD": password}


def test_dry_run_triggers_vdi_reconcile_with_dry_run_conf_and_prints_its_report(vdi, airflow):
    result = vdi(env(airflow), "reconcile", "--dry-run", "--json")

    assert result.code == 0, result.err
    printed = json.loads(result.out)
    assert printed["report"] == REPORT
    [trigger] = airflow.triggered
    assert trigger["conf"] == {"dry_run": True}
    assert trigger["logical_date"] is None
    assert trigger["dag_run_id"] == printed["dag_run_id"]


def test_a_report_stored_as_json_text_is_printed_as_the_document(vdi, airflow):
    airflow.report_as_text = True

    result = vdi(env(airflow), "reconcile", "--dry-run", "--json")

    assert json.loads(result.out)["report"] == REPORT


def test_the_human_report_says_nothing_changed(vdi, airflow):
    result = vdi(env(airflow), "reconcile", "--dry-run")

    assert result.code == 0, result.err
    assert "(dry run: nothing changed):" in result.out.splitlines()[0]
    assert "    redispatched: 1" in result.out.splitlines()


def test_a_failed_run_exits_1_pointing_at_its_logs(vdi, airflow):
    airflow.states = ["running", "failed"]

    result = vdi(env(airflow), "reconcile", "--dry-run")

    assert result.code == 1
    assert result.err.startswith("vdi: the run vdi-cli__") and result.err.endswith(
        "of vdi_reconcile failed; its task logs in the Airflow UI say why\n")


def test_a_run_not_done_by_the_deadline_exits_1(vdi, airflow):
    airflow.states = ["running"]

    result = vdi(env(airflow), "reconcile", "--dry-run", "--wait", "0")

    assert result.code == 1
    assert "is still running after 0 s; follow it in the Airflow UI" in result.err


def test_a_paused_dag_is_not_triggered(vdi, airflow):
    airflow.paused = True

    result = vdi(env(airflow), "reconcile", "--dry-run")

    assert result.err == "vdi: vdi_reconcile is paused in Airflow: unpause it, or its run would never start\n"
    assert airflow.triggered == []


def test_refused_credentials_exit_1_without_showing_them(vdi, airflow):
    result = vdi(env(airflow, password="wrong-password"), "reconcile", "--dry-run")

    assert (result.code, result.err) == (1, "vdi: Airflow refused the credentials of vdi (HTTP 401)\n")
    assert airflow.triggered == []

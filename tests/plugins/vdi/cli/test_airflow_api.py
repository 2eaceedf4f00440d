"""``vdi reconcile`` and its Airflow client (``vdi.cli.airflow_api``) over Airflow's REST API v2, against a small
fake of the documented endpoints they call (``/auth/token``, the DAG, its runs page by page, a task's XCom entry,
the health check) served over real HTTP. The real DAG and API server are the end-to-end suite's."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from flask import Flask, jsonify, request

from tests.sandbox.servers import serving
from vdi.cli.airflow_api import AirflowApi, AirflowError

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
    token: str = "token-1"  # the only token Airflow accepts now (a restarted Airflow signs with a new key)
    tokens_issued: int = 0
    runs: list[dict] = field(default_factory=list)  # what the list of runs holds
    health: dict = field(default_factory=lambda: {"metadatabase": {"status": "healthy"},
                                                  "scheduler": {"status": "healthy"}})

    def app(self) -> Flask:
        app = Flask("fake-airflow")

        @app.post("/auth/token")
        def token():
            body = request.get_json()
            if body != {"username": "vdi", "password": PASSWORD}:
                return jsonify({"detail": "Invalid credentials"}), 401
            self.tokens_issued += 1
            return jsonify({"access_token": self.token}), 201

        @app.before_request
        def bearer():
            if request.path == "/api/v2/monitor/health":  # needs no token
                return None
            if request.path.startswith("/api/") and request.headers.get("Authorization") != f"Bearer {self.token}":
                return jsonify({"detail": "Not authenticated"}), 401
            return None

        @app.get("/api/v2/monitor/health")
        def health():
            return jsonify(self.health)

        @app.get("/api/v2/dags/<dag_id>/dagRuns")
        def runs(dag_id):
            # Keyset pages as Airflow gives them with ``cursor``: at most 100 (maximum_page_limit), by id.
            limit = min(int(request.args.get("limit", 50)), 100)
            after = int(request.args["cursor"] or 0)
            page = [run for run in self.runs if run["id"] > after][:limit]
            more = any(run["id"] > page[-1]["id"] for run in self.runs) if page else False
            return jsonify({"dag_runs": page, "total_entries": len(self.runs),
                            "next_cursor": str(page[-1]["id"]) if more else None})

        @app.get("/api/v2/dags/<dag_id>")
        def dag(dag_id):
            if dag_id != "vdi_reconcile":
                return jsonify({"detail": f"The Dag with ID: `{dag_id}` was not found"}), 404
            return jsonify({"dag_id": dag_id, "is_paused": self.paused})

        @app.post("/api/v2/dags/<dag_id>/dagRuns")
        def trigger(dag_id):
            self.triggered.append(request.get_json())
            # Without a run id Airflow names the run after its kind and time.
            run_id = request.get_json().get("dag_run_id") or f"manual__2026-12-01T00:00:0{len(self.triggered)}+00:00"
            return jsonify({"dag_run_id": run_id, "state": "queued"})

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


@pytest.fixture
def client(airflow):
    api = AirflowApi(airflow.url, "vdi", PASSWORD, timeout_s=5)
    yield api
    api.close()


def test_a_token_airflow_no_longer_accepts_is_fetched_again_once(airflow, client):
    assert client.dag_exists("vdi_reconcile")
    airflow.token = "token-2"

    assert client.get("/dags/vdi_reconcile")["dag_id"] == "vdi_reconcile"
    assert airflow.tokens_issued == 2


def test_an_http_error_carries_airflows_status_and_detail(client):
    with pytest.raises(AirflowError) as refused:
        client.get("/dags/vdi_unknown")

    assert refused.value.status == 404
    assert "HTTP 404" in str(refused.value) and "was not found" in str(refused.value)
    assert client.dag_exists("vdi_unknown") is False


def test_trigger_returns_the_run_id_and_sends_no_run_id_unless_given(airflow, client):
    assert client.trigger("vdi_reconcile", {"dry_run": True}, "run-1") == "run-1"
    assert client.trigger("vdi_reconcile", {"dry_run": True}).startswith("manual__")

    assert airflow.triggered[0] == {"dag_run_id": "run-1", "logical_date": None, "conf": {"dry_run": True}}
    assert "dag_run_id" not in airflow.triggered[1]


def test_dag_runs_reads_every_page_and_runs_by_delivery_groups_them(airflow, client):
    airflow.runs = [{"id": n, "dag_run_id": f"run-{n}", "conf": {"delivery_id": f"d-{n % 120}"}}
                    for n in range(1, 251)]

    runs = client.dag_runs("vdi_provision")
    by_delivery = client.runs_by_delivery("vdi_provision")

    assert [run["dag_run_id"] for run in runs] == [f"run-{n}" for n in range(1, 251)]
    assert by_delivery["d-5"] == ["run-5", "run-125", "run-245"]
    assert len(by_delivery) == 120


def test_healthy_only_when_every_component_is_and_airflow_answers(airflow, client):
    assert client.healthy() is True
    airflow.health["scheduler"]["status"] = "unhealthy"
    assert client.healthy() is False
    assert AirflowApi("http://127.0.0.1:9", "vdi", PASSWORD, timeout_s=2).healthy() is False

"""Airflow's stand-in (bench.airflow_stub) knowing which DAGs exist: a trigger of any other DAG gets Airflow 3's
404, whose detail names the DAG (api_fastapi/core_api/routes/public/dag_run.py, ``trigger_dag_run``)."""

from __future__ import annotations

from urllib.parse import unquote

from bench.airflow_stub import AirflowStub


class AirflowWithDags(AirflowStub):
    def __init__(self, *args, missing_dags=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.missing_dags = set(missing_dags)

    def trigger(self, path: str, body: dict) -> tuple[int, dict]:
        dag_id = unquote(path.removeprefix("/api/v2/dags/").removesuffix("/dagRuns"))
        if dag_id in self.missing_dags:
            return 404, {"detail": f"Dag with dag_id: '{dag_id}' not found"}
        return super().trigger(path, body)

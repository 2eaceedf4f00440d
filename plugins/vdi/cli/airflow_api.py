"""Airflow's REST API v2 as ``vdi reconcile`` needs it: a token, trigger a run, wait for it, read a task's XCom."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

TERMINAL_STATES = ("success", "failed")


class AirflowError(RuntimeError):
    """Airflow could not be reached or refused; the message names no credential."""


@dataclass
class AirflowApi:
    base_url: str
    username: str
    password: str
    timeout_s: float = 10.0

    def __post_init__(self):
        self.base_url = self.base_url.rstrip("/")
        self.session = requests.Session()
        self._token: str | None = None

    def close(self) -> None:
        self.session.close()

    def _call(self, method: str, path: str, what: str, **kwargs) -> requests.Response:
        try:
            return self.session.request(method, f"{self.base_url}{path}", timeout=self.timeout_s, **kwargs)
        except requests.RequestException as error:
            raise AirflowError(f"Airflow at {self.base_url} did not answer to {what} "
                               f"({type(error).__name__})") from None

    def _authorized(self, method: str, path: str, what: str, **kwargs) -> requests.Response:
        if self._token is None:
            answer = self._call("POST", "/auth/token", "a token request",
                                json={"username": self.username, "password": self.password})
            if answer.status_code >= 400:
                raise AirflowError(f"Airflow refused the credentials of {self.username} (HTTP {answer.status_code})")
            self._token = answer.json()["access_token"]
        return self._call(method, path, what, headers={"Authorization": f"Bearer {self._token}"}, **kwargs)

    def _json(self, answer: requests.Response, what: str) -> Any:
        if answer.status_code >= 400:
            try:
                detail = answer.json().get("detail")
            except (ValueError, AttributeError):
                detail = None
            raise AirflowError(f"Airflow answered HTTP {answer.status_code} to {what}"
                               + (f": {str(detail)[:200]}" if detail else ""))
        return answer.json()

    def dag(self, dag_id: str) -> dict:
        what = f"the DAG {dag_id}"
        answer = self._authorized("GET", f"/api/v2/dags/{quote(dag_id, safe='')}", what)
        if answer.status_code == 404:
            raise AirflowError(f"Airflow has no DAG {dag_id} (not deployed, or not parsed yet)")
        return self._json(answer, what)

    def trigger(self, dag_id: str, run_id: str, conf: dict, note: str | None = None) -> dict:
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf, **({"note": note} if note else {})}
        what = f"the trigger of {dag_id}"
        return self._json(self._authorized("POST", f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns", what,
                                           json=body), what)

    def run(self, dag_id: str, run_id: str) -> dict:
        what = f"the run {run_id}"
        return self._json(self._authorized(
            "GET", f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}", what), what)

    def wait(self, dag_id: str, run_id: str, deadline_s: float, interval_s: float = 2.0) -> dict:
        """The run once it has finished; ``AirflowError`` when it has not within ``deadline_s``."""
        give_up = time.monotonic() + deadline_s
        while True:
            run = self.run(dag_id, run_id)
            if run.get("state") in TERMINAL_STATES:
                return run
            if time.monotonic() >= give_up:
                raise AirflowError(f"the run {run_id} of {dag_id} is still {run.get('state')} after "
                                   f"{deadline_s:.0f} s; follow it in the Airflow UI")
            time.sleep(min(interval_s, max(0.0, give_up - time.monotonic())))

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        what = f"the XCom of {task_id}"
        path = (f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances/"
                f"{quote(task_id, safe='')}/xcomEntries/{quote(key, safe='')}")
        value = self._json(self._authorized("GET", path, what), what).get("value")
        if isinstance(value, str):  # a value stored as JSON text
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

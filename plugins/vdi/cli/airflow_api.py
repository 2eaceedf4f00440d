"""Airflow's REST API v2 as the ``vdi`` commands (and the end-to-end tests) use it: a token (fetched again when
Airflow answers 401), trigger a run, follow it, read a task's XCom, plus plain ``get``/``post``/``patch``."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

TERMINAL_STATES = ("success", "failed")
PAGE = 100  # Airflow's default [api] maximum_page_limit: a larger limit is cut to it


class AirflowError(RuntimeError):
    """Airflow could not be reached or refused; the message names no credential. ``status`` is Airflow's HTTP
    status, None when it did not answer."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


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

    def _new_token(self) -> str:
        answer = self._call("POST", "/auth/token", "a token request",
                            json={"username": self.username, "password": self.password})
        if answer.status_code >= 400:
            raise AirflowError(f"Airflow refused the credentials of {self.username} (HTTP {answer.status_code})",
                               answer.status_code)
        return answer.json()["access_token"]

    def _authorized(self, method: str, path: str, what: str, **kwargs) -> requests.Response:
        fresh = self._token is None
        if fresh:
            self._token = self._new_token()
        answer = self._call(method, path, what, headers={"Authorization": f"Bearer {self._token}"}, **kwargs)
        if answer.status_code == 401 and not fresh:  # the token expired, or Airflow restarted with a new key
            self._token = self._new_token()
            answer = self._call(method, path, what, headers={"Authorization": f"Bearer {self._token}"}, **kwargs)
        return answer

    def _json(self, answer: requests.Response, what: str) -> Any:
        if answer.status_code >= 400:
            try:
                detail = answer.json().get("detail")
            except (ValueError, AttributeError):
                detail = None
            raise AirflowError(f"Airflow answered HTTP {answer.status_code} to {what}"
                               + (f": {str(detail)[:200]}" if detail else ""), answer.status_code)
        return answer.json()

    def request(self, method: str, path: str, what: str | None = None, **kwargs) -> Any:
        """The JSON answer of ``method`` on ``path`` (under ``/api/v2``); ``AirflowError`` on an HTTP error."""
        what = what or f"{method} {path.split('?')[0]}"
        return self._json(self._authorized(method, f"/api/v2{path}", what, **kwargs), what)

    def get(self, path: str, **params) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: dict) -> Any:
        return self.request("POST", path, json=body)

    def patch(self, path: str, body: dict) -> Any:
        return self.request("PATCH", path, json=body)

    def healthy(self) -> bool:
        """Every component of Airflow healthy (the health endpoint needs no token); False when it does not answer."""
        try:
            health = self._call("GET", "/api/v2/monitor/health", "a health check").json()
        except (AirflowError, ValueError):
            return False
        return isinstance(health, dict) and all((part or {}).get("status") == "healthy" for part in health.values())

    def dag(self, dag_id: str) -> dict:
        what = f"the DAG {dag_id}"
        answer = self._authorized("GET", f"/api/v2/dags/{quote(dag_id, safe='')}", what)
        if answer.status_code == 404:
            raise AirflowError(f"Airflow has no DAG {dag_id} (not deployed, or not parsed yet)", 404)
        return self._json(answer, what)

    def dag_exists(self, dag_id: str) -> bool:
        """Whether Airflow has parsed ``dag_id``; False too when it does not answer."""
        try:
            return bool(self.dag(dag_id))
        except AirflowError:
            return False

    def trigger(self, dag_id: str, conf: dict, run_id: str | None = None, note: str | None = None) -> str:
        """A manual run of ``dag_id`` with ``conf`` (as from the UI's trigger form; Airflow names it unless
        ``run_id`` is given); its run id."""
        body = {"logical_date": None, "conf": conf, **({"dag_run_id": run_id} if run_id else {}),
                **({"note": note} if note else {})}
        return self.request("POST", f"/dags/{quote(dag_id, safe='')}/dagRuns", f"the trigger of {dag_id}",
                            json=body)["dag_run_id"]

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return self.request("GET", f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}",
                            f"the run {run_id}")

    def dag_runs(self, dag_id: str) -> list[dict]:
        """Every run of ``dag_id``, oldest first, page by page (keyset pages: a run created meanwhile shifts none)."""
        runs: list[dict] = []
        cursor = ""
        while cursor is not None:
            page = self.request("GET", f"/dags/{quote(dag_id, safe='')}/dagRuns", f"the runs of {dag_id}",
                                params={"limit": PAGE, "cursor": cursor, "order_by": "id"})
            runs.extend(page["dag_runs"])
            cursor = page.get("next_cursor") if page["dag_runs"] else None
        return runs

    def runs_by_delivery(self, dag_id: str) -> dict[str, list[str]]:
        """delivery_id (from each run's conf) -> the ids of the runs carrying it."""
        runs: dict[str, list[str]] = {}
        for run in self.dag_runs(dag_id):
            if delivery_id := (run.get("conf") or {}).get("delivery_id"):
                runs.setdefault(delivery_id, []).append(run["dag_run_id"])
        return runs

    def wait(self, dag_id: str, run_id: str, deadline_s: float, interval_s: float = 2.0) -> dict:
        """The run once it has finished; ``AirflowError`` when it has not within ``deadline_s``."""
        give_up = time.monotonic() + deadline_s
        while True:
            run = self.dag_run(dag_id, run_id)
            if run.get("state") in TERMINAL_STATES:
                return run
            if time.monotonic() >= give_up:
                raise AirflowError(f"the run {run_id} of {dag_id} is still {run.get('state')} after "
                                   f"{deadline_s:.0f} s; follow it in the Airflow UI")
            time.sleep(min(interval_s, max(0.0, give_up - time.monotonic())))

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        path = (f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances/"
                f"{quote(task_id, safe='')}/xcomEntries/{quote(key, safe='')}")
        value = self.request("GET", path, f"the XCom of {task_id}").get("value")
        if isinstance(value, str):  # a value stored as JSON text
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

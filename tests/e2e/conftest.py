"""The real local stack (embedded PostgreSQL, Airflow scheduler and API server, ...) for end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from sandbox.stack import settings
from tests.conftest import REPO_ROOT, free_port

STACK_PORT_VARIABLES = tuple(variable for variable, _ in settings.DEFAULT_PORTS.values())


def pytest_configure(config):
    config.addinivalue_line("markers", "celery: starts a local stack of its own on the CeleryExecutor")


def stack_environment(local_dir: Path) -> dict[str, str]:
    """An environment for ``python -m sandbox.stack`` on free ports in ``local_dir``, all sandboxes (no real-service
    setting of the caller's shell is passed on)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "VDI_")) and k not in {"PYTEST_CURRENT_TEST", *settings.STACK_ENV_KEYS}}
    env.update({variable: str(free_port()) for variable in STACK_PORT_VARIABLES})
    env["VDI_LOCAL_DIR"] = str(local_dir)
    return env


def run_stack(command: str, env: dict[str, str], timeout_s: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sandbox.stack", command], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout_s)


def read_stack_env(local_dir: Path) -> dict[str, str]:
    return settings.read_stack_env(local_dir / "stack.env")


def roomy_catalog(directory: Path) -> Path:
    """The shipped catalog with per-user limits raised: the e2e tests file many tickets for few users."""
    import yaml

    catalog = yaml.safe_load((REPO_ROOT / "include" / "catalog.yaml").read_text())
    catalog["limits"]["desktops_per_user"] = 100
    path = directory / "catalog.yaml"
    path.write_text(yaml.safe_dump(catalog))
    return path


def running_stack(local_dir: Path, **extra_env: str):
    """Start a local stack in ``local_dir`` (with ``extra_env``), yield its ``stack.env`` values (plus
    ``VDI_LOCAL_DIR``), stop it: the body of a stack fixture."""
    env = stack_environment(local_dir)
    env["VDI_CATALOG_PATH"] = str(roomy_catalog(local_dir))
    env.update(extra_env)
    started = run_stack("run", env)
    if started.returncode != 0:
        run_stack("stop", env)
        pytest.fail(f"make run failed:\n{started.stdout}\n{started.stderr}")
    values = read_stack_env(local_dir)
    values["VDI_LOCAL_DIR"] = str(local_dir)
    yield values
    stopped = run_stack("stop", env)
    assert stopped.returncode == 0, stopped.stderr


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory):
    """A running local stack for the whole session; yields its ``stack.env`` values (plus ``VDI_LOCAL_DIR``)."""
    yield from running_stack(tmp_path_factory.mktemp("stack"))


class AirflowApi:
    """Airflow's REST API v2 with a token from ``/auth/token``, fetched again when Airflow answers 401."""

    def __init__(self, base_url: str, username: str, password: str):
        self.base_url = base_url
        self.credentials = {"username": username, "password": password}
        self.session = requests.Session()

    def _renew_token(self) -> None:
        token = self.session.post(f"{self.base_url}/auth/token", json=self.credentials, timeout=10)
        token.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def _request(self, method: str, path: str, **kwargs) -> requests.Response:
        if "Authorization" not in self.session.headers:
            self._renew_token()
        response = self.session.request(method, f"{self.base_url}/api/v2{path}", timeout=15, **kwargs)
        if response.status_code == 401:  # an Airflow restarted with a new signing key
            self._renew_token()
            response = self.session.request(method, f"{self.base_url}/api/v2{path}", timeout=15, **kwargs)
        response.raise_for_status()
        return response

    def get(self, path: str, **params):
        return self._request("GET", path, params=params).json()

    def post(self, path: str, body: dict):
        return self._request("POST", path, json=body).json()

    def patch(self, path: str, body: dict):
        return self._request("PATCH", path, json=body).json()

    def trigger(self, dag_id: str, conf: dict) -> str:
        """A manual run of ``dag_id`` with ``conf``, as from the UI's trigger form; its run id."""
        return self.post(f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})["dag_run_id"]

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}")

    def dag_runs(self, dag_id: str) -> list[dict]:
        return self.get(f"/dags/{dag_id}/dagRuns", limit=1000)["dag_runs"]

    def runs_by_delivery(self, dag_id: str) -> dict[str, list[str]]:
        """delivery_id (from each run's conf) -> the run ids carrying it."""
        runs: dict[str, list[str]] = {}
        for run in self.dag_runs(dag_id):
            if delivery_id := (run.get("conf") or {}).get("delivery_id"):
                runs.setdefault(delivery_id, []).append(run["dag_run_id"])
        return runs

    def dag_exists(self, dag_id: str) -> bool:
        try:
            return bool(self.get(f"/dags/{dag_id}"))
        except requests.RequestException:
            return False

    def healthy(self) -> bool:
        """Every component healthy (the health endpoint needs no token)."""
        try:
            health = requests.get(f"{self.base_url}/api/v2/monitor/health", timeout=3).json()
        except (requests.RequestException, ValueError):
            return False
        return all((part or {}).get("status") == "healthy" for part in health.values())


@pytest.fixture(scope="session")
def airflow_api(local_stack) -> AirflowApi:
    return AirflowApi(local_stack["AIRFLOW_API_URL"], local_stack["AIRFLOW_USERNAME"], local_stack["AIRFLOW_PASSWORD"])

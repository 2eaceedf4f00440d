"""The real local stack (embedded PostgreSQL, Airflow scheduler and API server, ...) for end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.stack import settings
from tests.conftest import REPO_ROOT, free_port
from vdi.cli.airflow_api import AirflowApi  # the vdi CLI's client serves the tests too

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
    # The scheduled reconcile would race the tests that trigger one (and hold the reconcile's one run at a time):
    # once a year here; tests/e2e/test_vdi_reconcile.py triggers its runs.
    yield from running_stack(tmp_path_factory.mktemp("stack"), VDI_RECONCILE_SCHEDULE="0 0 1 1 *")


@pytest.fixture(scope="session")
def airflow_api(local_stack) -> AirflowApi:
    return AirflowApi(local_stack["AIRFLOW_API_URL"], local_stack["AIRFLOW_USERNAME"], local_stack["AIRFLOW_PASSWORD"],
                      timeout_s=15)

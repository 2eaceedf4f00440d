"""plugins/airflow_local_settings.py: every Airflow process started with this plugins folder has imported what the
VDI tasks use before it forks task processes, and the module sets no cluster policy."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

TASK_MODULES = ["psycopg", "atlassian", "boto3", "airflow.providers.amazon.aws.hooks.base_aws", "vdi.provision",
                "vdi.userdata", "vdi.waits"]


def test_an_airflow_process_starts_with_the_task_modules_imported_and_no_policy_set():
    script = (
        "import json, sys\n"
        "import airflow\n"
        "import airflow_local_settings\n"
        "from airflow.policies import hookimpl\n"
        f"print(json.dumps({{'loaded': [m for m in {TASK_MODULES!r} if m in sys.modules],\n"
        "                   'policies': [n for n in ('task_policy', 'dag_policy', 'task_instance_mutation_hook',\n"
        "                                'pod_mutation_hook', 'get_airflow_context_vars')\n"
        "                                if hasattr(airflow_local_settings, n)],\n"
        "                   'file': airflow_local_settings.__file__}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__CORE__PLUGINS")}
    env["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO_ROOT / "plugins")
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd="/", capture_output=True, text=True,
                            timeout=300, check=True)
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["file"] == str(REPO_ROOT / "plugins" / "airflow_local_settings.py")
    assert found["loaded"] == TASK_MODULES
    assert found["policies"] == []


def test_a_process_that_imports_a_vdi_module_first_imports_it_whole():
    """vdi.leostream imports Airflow, whose start-up imports this module: it must not import vdi modules then."""
    env = {**os.environ, "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins")}
    for module in ("vdi.leostream", "vdi.provision", "vdi.waits"):
        result = subprocess.run([sys.executable, "-c", f"import {module}"], env=env, cwd="/", capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]


def test_a_module_that_cannot_be_imported_stops_the_start_instead_of_being_skipped(monkeypatch):
    monkeypatch.setitem(sys.modules, "vdi.userdata", None)  # as if it failed to import
    spec = importlib.util.spec_from_file_location("local_settings_under_test",
                                                  REPO_ROOT / "plugins" / "airflow_local_settings.py")
    with pytest.raises(ImportError, match="vdi.userdata"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))

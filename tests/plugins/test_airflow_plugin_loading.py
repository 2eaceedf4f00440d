"""Airflow's plugin loader execs every .py under plugins/ as a top-level module named by its stem, installed or not:
plugins/.airflowignore keeps the vdi package out of that."""

import sys
from pathlib import Path

PLUGINS_DIR = Path(__file__).resolve().parents[2] / "plugins"


def test_airflow_plugin_loader_skips_the_vdi_package_and_shadows_nothing():
    from airflow._shared.plugins_manager.plugins_manager import _load_plugins_from_plugin_directory

    stdlib_http = sys.modules["http"]
    _, import_errors = _load_plugins_from_plugin_directory(str(PLUGINS_DIR))
    assert import_errors == {}
    assert sys.modules["http"] is stdlib_http
    assert not {path.stem for path in (PLUGINS_DIR / "vdi").rglob("*.py")} & {
        name for name, module in sys.modules.items()
        if str(getattr(module, "__file__", "") or "").startswith(str(PLUGINS_DIR / "vdi"))
        and "." not in name and name != "vdi"}

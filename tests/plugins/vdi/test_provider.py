"""The installed ``vdi-studios`` distribution and its Airflow provider: the ``leostream`` connection type, its form,
and its "Test" as Airflow runs it (hook resolved through the ``ProvidersManager``), against the Leostream
sandbox served in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from tests.sandbox.leostream.conftest import API_PASSWORD, API_USER, leostream, leostream_spec  # noqa: F401

DISTRIBUTION = "vdi-studios"


def test_vdi_and_the_bridge_import_from_any_directory_as_the_installed_distribution(tmp_path):
    probe = (
        "import importlib.util, vdi, webhook_bridge\n"
        "from importlib.metadata import distribution\n"
        "from vdi.store.migrate import MIGRATIONS_DIR\n"
        "from vdi.userdata import TEMPLATES\n"
        "print(distribution('vdi-studios').version, sorted(p.name for p in MIGRATIONS_DIR.glob('*.sql'))[0],\n"
        "      sorted(p.name for p in TEMPLATES.iterdir()),\n"
        "      [name for name in ('sandbox', 'bench', 'tests') if importlib.util.find_spec(name)])\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(" ", 2) == ["0.1.0", "0001_initial.sql",
                                           "['linux.sh.j2', 'windows.ps1.j2'] []\n"]


def test_the_entry_point_gives_provider_info_valid_for_airflow_and_named_after_its_distribution():
    import airflow
    import jsonschema

    [entry_point] = [ep for ep in entry_points(group="apache_airflow_provider") if ep.dist.name == DISTRIBUTION]
    info = entry_point.load()()
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(info, schema)
    assert info["package-name"] == DISTRIBUTION
    assert [c["connection-type"] for c in info["connection-types"]] == ["leostream"]


def test_airflows_connection_form_offers_leostream_with_labelled_fields():
    """What the API server answers on ``GET /ui/connections/hook_meta``."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    [meta] = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "leostream"]
    assert (meta.hook_class_name, meta.hook_name) == ("vdi.leostream.LeostreamHook", "Leostream Connection Broker")
    fields = meta.standard_fields
    assert (fields.host.title, fields.login.title, fields.password.title) == ("API URL", "API user", "API password")
    assert fields.url_schema.hidden and fields.port.hidden
    titles = {name: field["schema"]["title"] for name, field in meta.extra_fields.items()}
    assert {name: titles[name] for name in ("verify", "center_name", "auth_server", "broker_address")} == {
        "verify": "Verify TLS certificate", "center_name": "AWS center name", "auth_server": "Authentication server",
        "broker_address": "Broker address for desktop agents"}


@pytest.fixture
def broker(leostream):
    """The sandbox with the AWS center the connections below name."""
    leostream.login()
    leostream.add_center("AWS studio")
    return leostream


def test_a_leostream_connection_made_as_the_api_server_makes_it_tests_ok_through_the_registered_provider(
        broker, monkeypatch):
    """As ``POST /api/v2/connections/test`` does: an ``airflow.models.Connection`` from the form's fields, exported
    as its URI to a transient ``AIRFLOW_CONN_*``, then ``test_connection()``, which finds the hook class through
    the ``ProvidersManager`` (``Unknown hook type "leostream"`` without the provider)."""
    from airflow.models import Connection
    from airflow.providers_manager import ProvidersManager

    assert DISTRIBUTION in ProvidersManager().providers
    connection = Connection(conn_id="leostream_form_test", conn_type="leostream", host=broker.url, login=API_USER,
                            password=API_PASSWORD, extra=json.dumps({"center_name": "AWS studio", "verify": False}))
    monkeypatch.setenv("AIRFLOW_CONN_LEOSTREAM_FORM_TEST", connection.get_uri())
    ok, message = connection.test_connection()
    assert ok, message
    assert API_PASSWORD not in message


def test_a_leostream_connection_held_by_a_worker_tests_through_the_task_sdk(broker):
    """As a worker runs a queued connection test: an ``airflow.sdk.Connection`` in memory, no environment."""
    from airflow.sdk import Connection

    connection = Connection(conn_id="leostream_queued_test", conn_type="leostream", host=broker.url, login=API_USER,
                            password=API_PASSWORD, extra=json.dumps({"center_name": "AWS studio"}))
    ok, message = connection.test_connection()
    assert ok, message


def test_a_leostream_connection_to_a_missing_center_tests_false_with_the_reason(broker):
    from airflow.sdk import Connection

    connection = Connection(conn_id="leostream_wrong_center", conn_type="leostream", host=broker.url,
                            login=API_USER, password=API_PASSWORD, extra=json.dumps({"center_name": "AWS elsewhere"}))
    ok, message = connection.test_connection()
    assert not ok
    assert "named 'AWS elsewhere', found 0" in message and API_PASSWORD not in message

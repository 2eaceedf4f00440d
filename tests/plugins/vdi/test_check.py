"""``vdi.check``: one verdict per system against real parts (PostgreSQL, the Jira and Leostream sandboxes served
in-process, moto), and the verdict that names what is missing."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import REPO_ROOT, free_port
from tests.sandbox.jira.conftest import API_TOKEN, API_USER, jira, jira_spec, make_jira  # noqa: F401
from tests.sandbox.leostream.conftest import API_PASSWORD, leostream, leostream_spec  # noqa: F401
from tests.sandbox.leostream.conftest import API_USER as LEOSTREAM_USER
from vdi import check
from vdi.check import SYSTEMS, Verdict, check_all, workflow_gaps

SEED = REPO_ROOT / "sandbox" / "data" / "jira_seed.json"


def connections(jira_url: str, leostream_url: str, moto_endpoint: str, database_url: str) -> dict[str, str]:
    """The settings as the DAGs get them: Airflow connections as ``AIRFLOW_CONN_*`` JSON, plus the app database."""
    return {
        "VDI_DATABASE_URL": database_url,
        "AIRFLOW_CONN_JIRA_DEFAULT": json.dumps({"conn_type": "jira", "host": jira_url, "login": API_USER,
                                                 "password": API_TOKEN}),
        "AIRFLOW_CONN_LEOSTREAM_DEFAULT": json.dumps({"conn_type": "leostream", "host": leostream_url,
                                                      "login": LEOSTREAM_USER, "password": API_PASSWORD}),
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws", "login": "testing", "password": "testing",
                                                "extra": {"region_name": "us-east-1",
                                                          "endpoint_url": moto_endpoint}}),
    }


@pytest.fixture
def services_env(jira, leostream, moto_endpoint, app_database_url) -> dict[str, str]:
    """Every system the product needs, working: the sandboxes (the broker with its AWS center), moto, a migrated
    database."""
    leostream.login()
    leostream.add_center()
    return connections(jira.url, leostream.url, moto_endpoint, app_database_url)


def verdicts(env: dict[str, str], **kwargs) -> dict[str, Verdict]:
    found = check_all(env, **kwargs)
    assert [v.system for v in found] == list(SYSTEMS)
    return {v.system: v for v in found}


def test_every_system_passes_against_the_sandboxes_moto_and_a_migrated_database(services_env, jira):
    found = verdicts(services_env)

    assert all(v.ok for v in found.values()), [v.line() for v in found.values()]
    assert "schema at migration" in found["database"].detail
    assert "project VDI" in found["jira"].detail
    assert "workflow 'VDI: Desktop Request' has the statuses and transitions" in found["jira"].detail
    assert "AWS center 'AWS'" in found["leostream"].detail
    assert "account 123456789012 in us-east-1" in found["aws"].detail
    assert found["jira"].line().startswith("jira: ok: ")


def test_the_stack_env_keys_serve_when_no_airflow_connection_is_set(jira, leostream, moto_endpoint,
                                                                    app_database_url):
    leostream.login()
    leostream.add_center()
    env = {"VDI_DATABASE_URL": app_database_url, "JIRA_URL": jira.url, "JIRA_USER": API_USER, "JIRA_TOKEN": API_TOKEN,
           "LEOSTREAM_URL": leostream.url, "LEOSTREAM_USER": LEOSTREAM_USER, "LEOSTREAM_PASSWORD": API_PASSWORD,
           "AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}

    assert all(v.ok for v in check_all(env)), [v.line() for v in check_all(env)]


def test_a_workflow_without_retry_fails_jira_naming_the_transition(jira_spec, leostream, moto_endpoint,
                                                                   app_database_url, tmp_path):
    seed = json.loads(SEED.read_text())
    [request_type] = [t for t in seed["project"]["issueTypes"] if t["name"] == "Desktop Request"]
    request_type["workflow"]["transitions"] = [t for t in request_type["workflow"]["transitions"]
                                               if t["name"] != "Retry"]
    (tmp_path / "seed.json").write_text(json.dumps(seed))

    with make_jira(jira_spec, SEED_PATH=str(tmp_path / "seed.json")) as (url, app):
        found = verdicts(connections(url, leostream.url, moto_endpoint, app_database_url))
        app.extensions["jira_dispatcher"].stop()

    assert not found["jira"].ok
    assert found["jira"].detail == ("project VDI workflow 'VDI: Desktop Request' lacks transition Failed -> Approved")
    assert found["database"].ok


def test_a_missing_field_fails_jira_naming_the_field_and_its_setting(services_env):
    found = verdicts({**services_env, "VDI_JIRA_BUNDLE_FIELD": "Desktop Flavour"})

    assert not found["jira"].ok
    assert found["jira"].detail == "Jira has no field 'Desktop Flavour' (VDI_JIRA_BUNDLE_FIELD)"


def test_a_missing_optional_os_field_is_noted_not_failed(services_env):
    found = verdicts(services_env)

    assert found["jira"].ok
    assert "no 'Desktop OS' field: requests get their bundle's default OS" in found["jira"].detail


def test_a_wrong_jira_token_fails_on_authentication_without_showing_it(services_env, jira):
    env = {**services_env, "AIRFLOW_CONN_JIRA_DEFAULT": json.dumps(
        {"conn_type": "jira", "host": jira.url, "login": API_USER, "password": "not-the-token-0123"})}

    found = verdicts(env)

    assert found["jira"].detail == f"Jira at {jira.url} refused the credentials of {API_USER} (HTTP 401)"
    assert "not-the-token" not in found["jira"].line()


def test_an_unreachable_jira_fails_in_one_line(services_env):
    url = f"http://127.0.0.1:{free_port()}"
    env = {**services_env, "AIRFLOW_CONN_JIRA_DEFAULT": json.dumps(
        {"conn_type": "jira", "host": url, "login": API_USER, "password": API_TOKEN})}

    found = verdicts(env, timeout_s=3)

    assert found["jira"].detail == f"Jira at {url} did not answer (ConnectionError)"


def test_a_broker_without_the_aws_center_fails_leostream(jira, leostream, moto_endpoint, app_database_url):
    found = verdicts(connections(jira.url, leostream.url, moto_endpoint, app_database_url))

    assert not found["leostream"].ok
    assert "expected one Amazon center" in found["leostream"].detail
    assert API_PASSWORD not in found["leostream"].line()


def test_a_named_center_that_does_not_exist_fails_leostream_by_name(services_env, leostream):
    env = {**services_env, "AIRFLOW_CONN_LEOSTREAM_DEFAULT": json.dumps(
        {"conn_type": "leostream", "host": leostream.url, "login": LEOSTREAM_USER, "password": API_PASSWORD,
         "extra": {"center_name": "AWS studio"}})}

    found = verdicts(env)

    assert "expected one Amazon center named 'AWS studio', found 0" in found["leostream"].detail


def test_an_unmigrated_database_fails_naming_the_migrations(services_env, empty_database_url):
    found = verdicts({**services_env, "VDI_DATABASE_URL": empty_database_url})

    assert not found["database"].ok
    assert "migrations not applied: 0001_initial, 0002_relay_heartbeats" in found["database"].detail
    assert found["database"].detail.endswith("(run python -m vdi.store.migrate)")


def test_a_catalog_image_missing_from_the_account_fails_aws_naming_it(services_env, tmp_path):
    catalog = yaml.safe_load((REPO_ROOT / "include" / "catalog.yaml").read_text())
    catalog["bundles"]["gpu"]["images"]["linux"]["us-east-1"] = "ami-00000000deadbeef0"
    catalog["bundles"]["gpu"]["subnet_id"] = "subnet-0000000000000000f"
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(catalog))

    found = verdicts({**services_env, "VDI_CATALOG_PATH": str(path)})

    assert not found["aws"].ok
    assert found["aws"].detail == ("AWS account 123456789012 in us-east-1 has no ami-00000000deadbeef0, "
                                   "subnet-0000000000000000f (from the catalog)")


def test_an_aws_region_other_than_the_catalogs_fails_aws(services_env, moto_endpoint):
    env = {**services_env, "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
        {"conn_type": "aws", "login": "testing", "password": "testing",
         "extra": {"region_name": "eu-west-1", "endpoint_url": moto_endpoint}})}

    found = verdicts(env)

    assert found["aws"].detail == "the AWS connection's region is eu-west-1, the catalog's us-east-1"


def test_a_connection_that_does_not_parse_is_named_without_its_value(services_env):
    found = verdicts({**services_env, "AIRFLOW_CONN_LEOSTREAM_DEFAULT": '{"conn_type": "leostream", "password": "s3cr'})

    assert found["leostream"].detail == "AIRFLOW_CONN_LEOSTREAM_DEFAULT is neither a connection's JSON nor its URI"


def test_workflow_gaps_counts_a_global_transition_from_every_status():
    statuses = [{"id": str(n), "name": name} for n, name in enumerate(["Approved", "In Progress", "Ready", "Failed"])]
    workflow = {"statuses": statuses, "transitions": [
        {"id": "1", "from": ["0"], "to": "1", "type": "directed"},
        {"id": "2", "from": ["1"], "to": "2", "type": "directed"},
        {"id": "3", "from": [], "to": "3", "type": "global"},
    ]}

    assert workflow_gaps(workflow, "Approved") == ["transition Failed -> Approved"]
    assert workflow_gaps({"statuses": statuses[:3], "transitions": []}, "Approved")[0] == "status 'Failed'"


def test_only_the_systems_asked_for_are_checked(services_env):
    env = {**services_env, "AIRFLOW_CONN_JIRA_DEFAULT": json.dumps(
        {"conn_type": "jira", "host": f"http://127.0.0.1:{free_port()}", "login": API_USER, "password": "x"})}

    found = check_all(env, systems=["aws", "database"])

    assert [(v.system, v.ok) for v in found] == [("database", True), ("aws", True)]


def test_a_verdict_is_one_line_saying_ok_or_failed():
    assert Verdict("aws", False, "no default VPC").line() == "aws: FAILED: no default VPC"


def test_a_long_verdict_is_cut_in_the_middle_so_its_advice_survives():
    detail = "database somewhere: migrations not applied: " + ", ".join(f"{n:04d}_step" for n in range(60)) \
        + " (run python -m vdi.store.migrate)"
    clipped = check._clip(detail)
    assert len(clipped) <= check._DETAIL_CHARS
    assert clipped.startswith("database somewhere: migrations not applied: 0000_step")
    assert clipped.endswith("(run python -m vdi.store.migrate)")

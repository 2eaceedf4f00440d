"""Connections and variables in AWS Secrets Manager (moto), read through Airflow's secrets backend as the DAGs
read them: the Jira and Leostream clients, the EC2 client and the app database are built from them."""

from __future__ import annotations

import json
import os
import uuid

import boto3
import psycopg
import pytest

from tests.sandbox.jira.conftest import API_TOKEN, API_USER
from tests.sandbox.leostream.conftest import API_PASSWORD as BROKER_PASSWORD
from tests.sandbox.leostream.conftest import API_USER as BROKER_USER
from vdi.secrets import CALL_LIMITS, CONNECTIONS_PREFIX, VARIABLES_PREFIX, SecretsManagerBackend

REGION = "us-west-1"  # a region of the shared moto server that only these tests use


@pytest.fixture
def secrets_manager(moto_endpoint, monkeypatch):
    """Airflow configured with ``vdi.secrets.SecretsManagerBackend`` on moto, under a prefix of this test's own,
    with no ``AIRFLOW_CONN_*`` left in the environment; yields (client, connections prefix, variables prefix)."""
    from airflow.sdk.configuration import clear_secrets_backends_cache
    from airflow.sdk.execution_time.cache import SecretCache

    for name in [n for n in os.environ if n.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("VDI_DATABASE_URL", raising=False)
    root = f"t{uuid.uuid4().hex[:8]}"
    connections, variables = f"{root}/{CONNECTIONS_PREFIX}", f"{root}/{VARIABLES_PREFIX}"
    monkeypatch.setenv("AIRFLOW__SECRETS__BACKEND", "vdi.secrets.SecretsManagerBackend")
    monkeypatch.setenv("AIRFLOW__SECRETS__BACKEND_KWARGS", json.dumps({
        "connections_prefix": connections, "variables_prefix": variables, "config_prefix": None,
        "region_name": REGION, "endpoint_url": moto_endpoint}))
    clear_secrets_backends_cache()
    SecretCache.reset()
    yield boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name=REGION), connections, variables
    clear_secrets_backends_cache()
    SecretCache.reset()


def put(client, name: str, value) -> None:
    client.create_secret(Name=name, SecretString=value if isinstance(value, str) else json.dumps(value))


def test_the_dags_clients_are_built_from_connections_in_secrets_manager(secrets_manager, jira, leostream,
                                                                        moto_endpoint, app_database_url, monkeypatch):
    client, connections, variables = secrets_manager
    monkeypatch.delenv("VDI_DATABASE_URL")  # the app database too comes from its connection, vdi_db
    put(client, f"{connections}/jira_default", {"conn_type": "jira", "host": jira.url, "login": API_USER,
                                                 "password": API_TOKEN})
    put(client, f"{connections}/leostream_default", {"conn_type": "leostream", "host": leostream.url,
                                                      "login": BROKER_USER, "password": BROKER_PASSWORD})
    put(client, f"{connections}/aws_default", {"conn_type": "aws", "login": "testing", "password": "testing",
                                                "extra": {"region_name": REGION, "endpoint_url": moto_endpoint}})
    put(client, f"{connections}/vdi_db", app_database_url)  # a URI, the other form the backend reads
    put(client, f"{variables}/vdi_note", "from Secrets Manager")

    from airflow.sdk import Variable

    from vdi.ec2 import aws_client
    from vdi.jira import JiraTicket
    from vdi.leostream import broker_session
    from vdi.store.db import database_url

    key = jira.create_request()
    assert JiraTicket.from_connection().status(key) == "Open"
    with broker_session() as broker:
        assert isinstance(broker.centers(), list)  # signed in with the connection's password
    assert aws_client("ec2").describe_regions()["Regions"]
    with psycopg.connect(database_url(), connect_timeout=5) as conn:
        assert conn.execute("SELECT count(*) FROM desktop_requests").fetchone() == (0,)
    assert Variable.get("vdi_note") == "from Secrets Manager"


def test_a_connection_missing_from_secrets_manager_is_reported_by_its_id(secrets_manager):
    from airflow.sdk.exceptions import AirflowNotFoundException

    from vdi.jira import JiraTicket

    with pytest.raises(AirflowNotFoundException, match="jira_default"):
        JiraTicket.from_connection()


def test_the_backends_calls_are_bounded_unless_the_kwargs_say_otherwise(moto_endpoint):
    bounded = SecretsManagerBackend(region_name=REGION, endpoint_url=moto_endpoint).client.meta.config
    assert (bounded.connect_timeout, bounded.read_timeout) == (CALL_LIMITS["connect_timeout"],
                                                               CALL_LIMITS["read_timeout"])
    assert bounded.retries["mode"] == "standard" and bounded.retries["total_max_attempts"] <= 4
    chosen = SecretsManagerBackend(region_name=REGION, endpoint_url=moto_endpoint,
                                   config_kwargs={"read_timeout": 9}).client.meta.config
    assert chosen.read_timeout == 9

"""The bridge's webhook secrets from AWS Secrets Manager (moto): the secret's current and previous versions, read at
start with bounded calls, instead of the environment's."""

from __future__ import annotations

import uuid

import boto3
import pytest

from tests.webhook_bridge.conftest import jira_body, signed_headers
from webhook_bridge import settings

REGION = "us-west-2"  # a region of the shared moto server that only these tests use


@pytest.fixture
def webhook_secret(moto_endpoint):
    """A new secret's name and a Secrets Manager client; the secret holds ``first`` until a test rotates it."""
    client = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name=REGION)
    name = f"vdi/webhook/jira-{uuid.uuid4().hex[:8]}"
    client.create_secret(Name=name, SecretString="first")
    return name, client


def secret_env(moto_endpoint: str, name: str) -> dict[str, str]:
    return {"BRIDGE_WEBHOOK_SECRET_ID": name, "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": moto_endpoint,
            "JIRA_WEBHOOK_SECRET": "from-the-environment"}


def test_a_secret_never_rotated_gives_its_one_value_and_the_environments_secret_is_not_used(
        webhook_secret, moto_endpoint):
    name, _ = webhook_secret
    assert settings.from_environment(secret_env(moto_endpoint, name))["WEBHOOK_SECRETS"] == ["first"]


def test_after_a_rotation_the_current_and_the_previous_version_are_accepted(webhook_secret, moto_endpoint):
    name, client = webhook_secret
    client.put_secret_value(SecretId=name, SecretString="second")
    assert settings.from_environment(secret_env(moto_endpoint, name))["WEBHOOK_SECRETS"] == ["second", "first"]
    client.put_secret_value(SecretId=name, SecretString="third")
    assert settings.from_environment(secret_env(moto_endpoint, name))["WEBHOOK_SECRETS"] == ["third", "second"]


def test_a_secret_that_cannot_be_read_stops_the_start_with_its_name_and_no_value(moto_endpoint):
    with pytest.raises(RuntimeError, match="vdi/webhook/missing.*ResourceNotFoundException") as raised:
        settings.from_environment(secret_env(moto_endpoint, "vdi/webhook/missing"))
    assert "from-the-environment" not in str(raised.value)


def test_without_a_secret_id_the_environment_gives_the_secrets_as_before():
    env = {"JIRA_WEBHOOK_SECRET": "current", "JIRA_WEBHOOK_PREVIOUS_SECRETS": "old"}
    assert settings.from_environment(env)["WEBHOOK_SECRETS"] == ["current", "old"]


def test_the_bridge_verifies_deliveries_with_the_secrets_it_found_in_secrets_manager(
        webhook_secret, moto_endpoint, make_app, bridge_config, monkeypatch):
    name, client = webhook_secret
    client.put_secret_value(SecretId=name, SecretString="second")
    for variable, value in secret_env(moto_endpoint, name).items():
        monkeypatch.setenv(variable, value)
    config = {key: value for key, value in bridge_config.items() if key != "WEBHOOK_SECRETS"}
    http = make_app(config).test_client()
    for number, secret in enumerate(("second", "first")):
        body = jira_body(key=f"VDI-{number + 1}")
        answer = http.post("/webhooks/jira", data=body, headers=signed_headers(body, f"sm-{number}", secret))
        assert answer.status_code == 202
    body = jira_body(key="VDI-9")
    refused = http.post("/webhooks/jira", data=body, headers=signed_headers(body, "sm-9", "from-the-environment"))
    assert refused.status_code == 401

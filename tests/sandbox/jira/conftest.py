"""Fixtures for the Jira sandbox: a served app on a free port, a session checked against Jira's OpenAPI document."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import requests
from flask import Flask

from sandbox.jira.app import create_app
from tests.sandbox.openapi_check import SpecChecker, jira_checker
from tests.sandbox.servers import serving

API_USER = "vdi-bot@studio.example"
API_TOKEN = "sandbox-api-token-1234"
ALICE = "712020:5b10ac8d82e05b22cc7d4e01"
BOB = "712020:5b10ac8d82e05b22cc7d4e02"
DANA = "712020:5b10ac8d82e05b22cc7d4e04"  # her profile hides her email
DESKTOP_LOGIN = "customfield_10052"
APPROVE, MARK_FAILED, RETRY = "11", "41", "81"


@dataclass
class JiraSandbox:
    url: str
    app: Flask
    http: requests.Session
    spec: SpecChecker

    def create_request(self, summary: str = "A desktop for Alice", bundle: str = "gpu", user: str = ALICE,
                       issuetype: str = "Desktop Request", **more_fields) -> str:
        fields = {"project": {"key": "VDI"}, "issuetype": {"name": issuetype}, "summary": summary,
                  "customfield_10051": {"accountId": user}, **more_fields}
        if issuetype == "Desktop Request":
            fields["customfield_10050"] = {"value": bundle}
        response = self.http.post(f"{self.url}/rest/api/2/issue", json={"fields": fields})
        assert response.status_code == 201, response.text
        return response.json()["key"]

    def transition(self, key: str, transition_id: str) -> None:
        response = self.http.post(f"{self.url}/rest/api/2/issue/{key}/transitions",
                                  json={"transition": {"id": transition_id}})
        assert response.status_code == 204, response.text


@pytest.fixture(scope="session")
def jira_spec() -> SpecChecker:
    return jira_checker()


def make_jira(jira_spec: SpecChecker, **config):
    def build(url: str) -> Flask:
        return create_app({"JIRA_URL": url, "JIRA_USER": API_USER, "JIRA_TOKEN": API_TOKEN, **config})

    return serving(build)


@pytest.fixture
def jira(jira_spec):
    """A fresh Jira sandbox; every call made through ``jira.http`` is checked against the OpenAPI document."""
    jira_spec.reset()
    with make_jira(jira_spec, WEBHOOK_DELAY_SCALE=0.0002, WEBHOOK_TIMEOUT_S=2) as (url, app):
        session = jira_spec.watch(requests.Session())
        session.auth = (API_USER, API_TOKEN)
        yield JiraSandbox(url, app, session, jira_spec)
        app.extensions["jira_dispatcher"].stop()
    assert not jira_spec.problems, "traffic that does not match Jira's OpenAPI document:\n" + "\n".join(
        str(p) for p in jira_spec.problems)

"""Fixtures for the Leostream sandbox: a served broker reading EC2 from a real moto server (its first-boot stand-in
playing each desktop's first boot in ``FIRST_BOOT_DELAY_S``), a checked session."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import boto3
import pytest
import requests
from flask import Flask

from sandbox.leostream.app import create_app
from tests.conftest import wait_until
from tests.sandbox.openapi_check import SpecChecker, leostream_checker
from tests.sandbox.servers import serving

API_USER = "vdi-api"
API_PASSWORD = "sandbox-broker-password"
REGION = "eu-west-2"  # a region of the shared moto server that only these tests use
FIRST_BOOT_DELAY_S = 0.3  # a first boot, quick enough for tests, slow enough to be seen "running" first


@dataclass
class LeostreamSandbox:
    url: str
    app: Flask
    http: requests.Session
    spec: SpecChecker
    aws: str

    @property
    def api(self) -> str:
        return f"{self.url}/rest/v1"

    def login(self) -> str:
        response = self.http.post(f"{self.api}/session/login", json={"user_login": API_USER,
                                                                     "password": API_PASSWORD})
        assert response.status_code == 200, response.text
        sid = response.json()["sid"]
        self.http.headers["Authorization"] = f"Bearer {sid}"
        return sid

    def ec2(self):
        return boto3.client("ec2", endpoint_url=self.aws, region_name=REGION)

    def launch(self, name: str, **tags: str) -> str:
        ec2 = self.ec2()
        image = region_image(self.aws)
        all_tags = [{"Key": "Name", "Value": name}] + [{"Key": k.replace("_", ":"), "Value": v}
                                                       for k, v in tags.items()]
        reservation = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="g4dn.xlarge",
                                        TagSpecifications=[{"ResourceType": "instance", "Tags": all_tags}])
        return reservation["Instances"][0]["InstanceId"]

    def add_center(self, name: str = "AWS", **definition) -> dict:
        body = {"center_definition": {"name": name, "type": "amazon", "vc_auth_method": "access_key",
                                      "vc_datacenter": REGION, "vc_name": "AKIASANDBOX", "vc_password": "aws-secret",
                                      "poll_interval": 0, "wait_inst_status": 1, "wait_sys_status": 1,
                                      **definition}}
        response = self.http.post(f"{self.api}/centers/amazon", json=body)
        assert response.status_code == 201, response.text
        return response.json()["stored_data"]

    def scan(self, center_id: int) -> None:
        response = self.http.post(f"{self.api}/centers/{center_id}/scan")
        assert response.status_code == 202, response.text
        wait_until(lambda: self.http.get(f"{self.api}/centers/{center_id}").json()["status"] == 1,
                   message="the center scan to finish")

    def pool(self, pool_id: int) -> dict:
        return self.http.get(f"{self.api}/pools/{pool_id}").json()

    def add_pool(self, name: str, definition: dict) -> int:
        response = self.http.post(f"{self.api}/pools", json={"name": name, "pool_definition": definition})
        assert response.status_code == 201, response.text
        return response.json()["stored_data"]["id"]

    def tags(self, instance_id: str) -> dict[str, str]:
        [reservation] = self.ec2().describe_instances(InstanceIds=[instance_id])["Reservations"]
        return {t["Key"]: t["Value"] for t in reservation["Instances"][0].get("Tags", [])}


@lru_cache(maxsize=None)
def region_image(moto_endpoint: str) -> str:
    """One of moto's images in the test region (listing them takes seconds: once per moto server)."""
    ec2 = boto3.client("ec2", endpoint_url=moto_endpoint, region_name=REGION)
    return ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]


def clear_region(moto_endpoint: str) -> None:
    """Terminate what earlier tests launched in this module's region (scans skip terminated instances)."""
    ec2 = boto3.client("ec2", endpoint_url=moto_endpoint, region_name=REGION)
    alive = [i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
             if i["State"]["Name"] != "terminated"]
    if alive:
        ec2.terminate_instances(InstanceIds=alive)


@pytest.fixture(scope="session")
def leostream_spec() -> SpecChecker:
    return leostream_checker()


@contextmanager
def make_leostream(aws: str, **config) -> Iterator[tuple[str, Flask]]:
    def build(url: str) -> Flask:
        return create_app({"LEOSTREAM_USER": API_USER, "LEOSTREAM_PASSWORD": API_PASSWORD,
                           "AWS_ENDPOINT_URL": aws, "POLL_SCALE": 0, "FIRST_BOOT_DELAY_S": FIRST_BOOT_DELAY_S,
                           "FIRST_BOOT_POLL_S": 0.1, **config})

    with serving(build) as (url, app):
        try:
            yield url, app
        finally:
            app.extensions["leostream_first_boot"].stopped.set()
            if poller := app.extensions.get("leostream_poller"):
                poller.stopped.set()


@pytest.fixture
def leostream(leostream_spec, moto_endpoint):
    """A fresh broker over an emptied moto; every call through ``leostream.http`` is checked against the document."""
    clear_region(moto_endpoint)
    leostream_spec.reset()
    with make_leostream(moto_endpoint) as (url, app):
        yield LeostreamSandbox(url, app, leostream_spec.watch(requests.Session()), leostream_spec, moto_endpoint)
    assert not leostream_spec.problems, "traffic that does not match Leostream's OpenAPI document:\n" + "\n".join(
        str(p) for p in leostream_spec.problems)

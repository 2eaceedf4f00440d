"""The sandbox programs ``make run`` starts (moto, Leostream, Jira) run from their own commands, as separate
processes configured only by the stack's runtime environment, and work together: the broker scans moto, and the
bridge webhook registers with Jira without the bridge running."""

from __future__ import annotations

import os
import signal
import subprocess

import boto3
import pytest
import requests

from sandbox.stack.programs import register_jira_webhook, sandbox_programs
from sandbox.stack.settings import REPO_ROOT, StackSettings
from tests.conftest import free_port
from tests.conftest import wait_until
from vdi.jira_webhooks import WEBHOOK_NAME


@pytest.fixture
def stack_settings(tmp_path) -> StackSettings:
    environ = {"VDI_LOCAL_DIR": str(tmp_path / "local"), "PATH": os.environ.get("PATH", "")}
    for variable in ("VDI_JIRA_PORT", "VDI_LEOSTREAM_PORT", "VDI_MOTO_PORT", "VDI_BRIDGE_PORT", "VDI_AIRFLOW_PORT",
                     "VDI_PG_PORT"):
        environ[variable] = str(free_port())
    settings = StackSettings.from_environment(environ)
    settings.write_runtime_env()
    return settings


@pytest.fixture
def running_sandboxes(stack_settings, tmp_path):
    processes = []
    try:
        for program in sandbox_programs(stack_settings):
            log = open(tmp_path / f"{program.name}.log", "wb")
            command = [str(stack_settings.python), "-m", "sandbox.stack.exec", str(stack_settings.runtime_env_path),
                       *program.command]
            processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                              cwd=REPO_ROOT))

            def healthy(url=program.health_url, process=processes[-1]):
                assert process.poll() is None, f"{program.name} exited; see {log.name}"
                try:
                    return requests.get(url, timeout=2).ok
                except requests.RequestException:
                    return False

            wait_until(healthy, timeout_s=60, message=f"{program.name} to answer {program.health_url}")
        yield stack_settings
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(timeout=20)


def test_sandbox_programs_listen_on_their_ports_and_answer_health(stack_settings):
    programs = {p.port_name: p for p in sandbox_programs(stack_settings)}
    assert set(programs) == {"moto", "leostream", "jira"}
    for name, program in programs.items():
        assert str(stack_settings.ports[name]) in program.health_url and program.with_runtime_env


def test_the_processes_work_together_from_the_runtime_environment(running_sandboxes):
    env = running_sandboxes.stack_env()
    ec2 = boto3.client("ec2", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1,
                      TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "vdi-VDI-7"}]}])

    broker = requests.Session()
    api = f"{env['LEOSTREAM_URL']}/rest/v1"
    sid = broker.post(f"{api}/session/login", json={"user_login": env["LEOSTREAM_USER"],
                                                    "password": env["LEOSTREAM_PASSWORD"]}).json()["sid"]
    broker.headers["Authorization"] = f"Bearer {sid}"
    center = broker.post(f"{api}/centers/amazon", json={"center_definition": {
        "name": "aws", "type": "amazon", "vc_auth_method": "attached_role", "vc_datacenter": "us-east-1"}})
    center_id = center.json()["stored_data"]["id"]
    assert broker.post(f"{api}/centers/{center_id}/scan").status_code == 202
    wait_until(lambda: [vm for vm in broker.get(f"{api}/pools/1").json()["vms_list"] if vm["name"] == "vdi-VDI-7"],
               timeout_s=20, message="the broker to see the moto instance")

    register_jira_webhook(running_sandboxes)
    register_jira_webhook(running_sandboxes)
    listed = requests.get(f"{env['JIRA_URL']}/rest/webhooks/1.0/webhook", auth=(env["JIRA_USER"], env["JIRA_TOKEN"]),
                          timeout=5).json()
    assert [(w["name"], w["url"]) for w in listed] == [(WEBHOOK_NAME, f"{env['BRIDGE_URL']}/webhooks/jira")]

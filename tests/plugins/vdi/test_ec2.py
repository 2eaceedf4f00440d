import base64
import uuid

import boto3
import pytest

from vdi import ec2 as ec2_ops
from vdi.catalog import DEFAULT_CATALOG_PATH, load_catalog
from vdi.request import parse_issue


@pytest.fixture
def ec2(moto_endpoint):
    client = boto3.client("ec2", endpoint_url=moto_endpoint, region_name="us-east-1")
    iam = boto3.client("iam", endpoint_url=moto_endpoint, region_name="us-east-1")
    try:
        iam.create_instance_profile(InstanceProfileName="vdi-desktop")
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    return client


@pytest.fixture
def desktop_request(jira_issue, field_names, field_config):
    # A ticket of its own per test: moto's server is shared by the session.
    jira_issue["key"] = f"VDI-{uuid.uuid4().int % 10**6 + 1}"
    return parse_issue(jira_issue, field_config, field_names)


@pytest.fixture
def params(desktop_request):
    catalog = load_catalog(DEFAULT_CATALOG_PATH)
    return ec2_ops.run_instances_params(desktop_request, catalog.bundles["standard"], "linux", "us-east-1",
                                        "#!/bin/bash\necho bootstrap\n")


def test_launch_parameters_require_imdsv2_encrypt_the_root_volume_and_tag_the_request(params, desktop_request):
    assert params["MetadataOptions"]["HttpTokens"] == "required"
    assert params["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] is True
    assert params["IamInstanceProfile"] == {"Name": "vdi-desktop"}
    tags = {t["Key"]: t["Value"] for t in params["TagSpecifications"][0]["Tags"]}
    assert tags == {"Name": ec2_ops.instance_name(desktop_request.issue_key), "vdi:issue": desktop_request.issue_key,
                    "vdi:request": str(desktop_request.request_id), "vdi:user": "ada@studio.example"}
    assert params["ClientToken"] == f"vdi-{desktop_request.request_id}"
    assert len(params["ClientToken"]) <= 64


def test_launch_once_launches_a_tagged_instance_with_the_user_data(ec2, params, desktop_request):
    instance_id, launched = ec2_ops.launch_once(ec2, params, desktop_request.request_id)
    assert launched
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags["vdi:request"] == str(desktop_request.request_id)
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert ec2_ops.decoded_user_data(ec2, instance_id) == "#!/bin/bash\necho bootstrap\n"


def test_a_retry_after_a_crash_between_launch_and_record_finds_the_instance(ec2, params, desktop_request):
    # The first attempt launched, then died before recording the id: only the tags remember it.
    first = ec2.run_instances(**params)["Instances"][0]["InstanceId"]
    instance_id, launched = ec2_ops.launch_once(ec2, params, desktop_request.request_id)
    assert (instance_id, launched) == (first, False)
    live = ec2_ops.find_request_instance(ec2, desktop_request.request_id)
    assert live["InstanceId"] == first


def test_a_terminated_instance_does_not_count_as_the_desktop(ec2, params, desktop_request):
    first, _ = ec2_ops.launch_once(ec2, params, desktop_request.request_id)
    ec2.terminate_instances(InstanceIds=[first])
    second, launched = ec2_ops.launch_once(ec2, params, desktop_request.request_id)
    assert launched and second != first


def test_a_running_instance_with_passed_checks_is_ready_and_a_stopped_one_is_not(ec2, params, desktop_request):
    instance_id, _ = ec2_ops.launch_once(ec2, params, desktop_request.request_id)
    running = ec2_ops.instance_status(ec2, instance_id)
    assert running == {"state": "running", "instance_check": "ok", "system_check": "ok"}
    assert ec2_ops.is_ready(running)
    ec2.stop_instances(InstanceIds=[instance_id])
    assert not ec2_ops.is_ready(ec2_ops.instance_status(ec2, instance_id))


def test_user_data_is_sent_base64_encoded_by_boto(ec2, params, desktop_request):
    instance_id, _ = ec2_ops.launch_once(ec2, params, desktop_request.request_id)
    raw = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")["UserData"]["Value"]
    assert base64.b64decode(raw).startswith(b"#!/bin/bash")

import base64
import uuid

import boto3
import pytest

from vdi import ec2 as ec2_ops
from vdi.catalog import DEFAULT_CATALOG_PATH, load_catalog
from vdi.request import parse_issue

USER_DATA = "#!/bin/bash\necho bootstrap\n"


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
def bundle():
    return load_catalog(DEFAULT_CATALOG_PATH).bundles["standard"]


@pytest.fixture
def params(ec2, desktop_request, bundle):
    return ec2_ops.run_instances_params(desktop_request, bundle, "linux", "us-east-1", USER_DATA, 0, ec2=ec2)


@pytest.fixture
def instance_id(ec2, params, desktop_request) -> str:
    return ec2_ops.launch_once(ec2, params, desktop_request.request_id)[0]


def tags_of(ec2, instance_id: str) -> dict[str, str]:
    tags = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [instance_id]}])["Tags"]
    return {tag["Key"]: tag["Value"] for tag in tags}


def missing_instance_id() -> str:
    return "i-" + uuid.uuid4().hex[:17]


# --- launch -------------------------------------------------------------------------------------------------

def test_launch_parameters_require_imdsv2_encrypt_the_root_volume_and_tag_the_request(params, desktop_request):
    assert params["MetadataOptions"]["HttpTokens"] == "required"
    assert params["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] is True
    assert params["IamInstanceProfile"] == {"Name": "vdi-desktop"}
    tags = {t["Key"]: t["Value"] for t in params["TagSpecifications"][0]["Tags"]}
    assert tags == {"Name": ec2_ops.instance_name(desktop_request.issue_key), "vdi:issue": desktop_request.issue_key,
                    "vdi:request": str(desktop_request.request_id), "vdi:user": "ada@studio.example"}


def test_generation_zero_keeps_the_first_token_and_each_generation_has_its_own(desktop_request):
    tokens = [ec2_ops.client_token(desktop_request, generation) for generation in range(3)]
    assert tokens[0] == f"vdi-{desktop_request.request_id}"
    assert tokens[1] == f"vdi-{desktop_request.request_id}-g1"
    assert len(set(tokens)) == 3
    assert all(len(token) <= 64 for token in tokens + [ec2_ops.client_token(desktop_request, 10**9)])
    with pytest.raises(ValueError, match="0 or more"):
        ec2_ops.client_token(desktop_request, -1)


def test_launch_parameters_carry_the_generations_token(ec2, desktop_request, bundle):
    params = ec2_ops.run_instances_params(desktop_request, bundle, "linux", "us-east-1", USER_DATA, 2, ec2=ec2)
    assert params["ClientToken"] == ec2_ops.client_token(desktop_request, 2)


def test_launch_once_launches_a_tagged_instance_with_the_user_data(ec2, params, desktop_request):
    instance_id, launched = ec2_ops.launch_once(ec2, params, desktop_request.request_id)
    assert launched
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    assert tags_of(ec2, instance_id)["vdi:request"] == str(desktop_request.request_id)
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert ec2_ops.decoded_user_data(ec2, instance_id) == USER_DATA


def test_a_retry_after_a_crash_between_launch_and_record_finds_the_instance(ec2, params, desktop_request):
    # The first attempt launched, then died before recording the id: only the tags remember it.
    first = ec2.run_instances(**params)["Instances"][0]["InstanceId"]
    instance_id, launched = ec2_ops.launch_once(ec2, params, desktop_request.request_id)
    assert (instance_id, launched) == (first, False)
    live = ec2_ops.find_request_instance(ec2, desktop_request.request_id)
    assert live["InstanceId"] == first


def test_relaunch_after_the_instance_is_terminated_uses_the_next_generations_token(ec2, desktop_request, bundle,
                                                                                    instance_id):
    # moto accepts a reused token (real AWS would answer IdempotentParameterMismatch for changed parameters, or
    # hand back the terminated instance): what it does show is the token each launch carried.
    ec2.terminate_instances(InstanceIds=[instance_id])
    assert ec2_ops.instance_state(ec2, instance_id) == "terminated"
    params = ec2_ops.run_instances_params(desktop_request, bundle, "linux", "us-east-1", USER_DATA, 1, ec2=ec2)
    second, launched = ec2_ops.launch_once(ec2, params, desktop_request.request_id)
    assert launched and second != instance_id
    tokens = {i["InstanceId"]: i["ClientToken"] for r in ec2.describe_instances(
        InstanceIds=[instance_id, second])["Reservations"] for i in r["Instances"]}
    assert tokens == {instance_id: f"vdi-{desktop_request.request_id}",
                      second: f"vdi-{desktop_request.request_id}-g1"}


def test_a_terminated_instance_does_not_count_as_the_desktop(ec2, params, desktop_request, instance_id):
    ec2.terminate_instances(InstanceIds=[instance_id])
    second, launched = ec2_ops.launch_once(ec2, params, desktop_request.request_id)
    assert launched and second != instance_id


def _root_volumes(ec2, instance_id: str) -> dict[str, dict]:
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    volumes = {m["DeviceName"]: m["Ebs"]["VolumeId"] for m in instance["BlockDeviceMappings"]}
    described = {v["VolumeId"]: v for v in ec2.describe_volumes(VolumeIds=list(volumes.values()))["Volumes"]}
    return {"root": instance["RootDeviceName"],
            "volumes": {device: described[volume] for device, volume in volumes.items()}}


@pytest.mark.parametrize("root_device", ["/dev/sda1", "/dev/xvda"])
def test_the_encrypted_root_volume_replaces_the_images_root_device(ec2, desktop_request, bundle, root_device):
    image_id = ec2.describe_images(Filters=[{"Name": "root-device-name", "Values": [root_device]},
                                            {"Name": "root-device-type", "Values": ["ebs"]}])["Images"][0]["ImageId"]
    bundle = bundle.model_copy(update={"images": {"linux": {"us-east-1": image_id}}})
    params = ec2_ops.run_instances_params(desktop_request, bundle, "linux", "us-east-1", USER_DATA, 0, ec2=ec2)
    assert [m["DeviceName"] for m in params["BlockDeviceMappings"]] == [root_device]

    instance_id, _ = ec2_ops.launch_once(ec2, params, desktop_request.request_id)

    launched = _root_volumes(ec2, instance_id)
    assert launched["root"] == root_device
    assert list(launched["volumes"]) == [root_device]  # one disk: the root, not an extra one beside it
    root = launched["volumes"][root_device]
    assert root["Encrypted"] is True and root["Size"] == bundle.root_volume.size_gb


def test_an_image_the_account_cannot_see_is_refused_before_launch(ec2, desktop_request, bundle):
    for missing in ("ami-0123456789abcdef0", "not-an-ami"):
        unknown = bundle.model_copy(update={"images": {"linux": {"us-east-1": missing}}})
        with pytest.raises(ec2_ops.ImageUnavailable, match=f"image {missing} does not exist"):
            ec2_ops.run_instances_params(desktop_request, unknown, "linux", "us-east-1", USER_DATA, 0, ec2=ec2)


# --- state ----------------------------------------------------------------------------------------------------

def test_instance_state_follows_the_instance_and_is_none_for_one_ec2_does_not_know(ec2, instance_id):
    assert ec2_ops.instance_state(ec2, instance_id) == "running"
    ec2.stop_instances(InstanceIds=[instance_id])
    assert ec2_ops.instance_state(ec2, instance_id) == "stopped"
    ec2.terminate_instances(InstanceIds=[instance_id])
    assert ec2_ops.instance_state(ec2, instance_id) == "terminated"
    assert ec2_ops.instance_state(ec2, missing_instance_id()) is None


def test_a_running_instance_with_passed_checks_is_ready_and_a_stopped_one_is_not(ec2, instance_id):
    running = ec2_ops.instance_status(ec2, instance_id)
    assert running == {"state": "running", "instance_check": "ok", "system_check": "ok"}
    assert ec2_ops.is_ready(running)
    ec2.stop_instances(InstanceIds=[instance_id])
    assert not ec2_ops.is_ready(ec2_ops.instance_status(ec2, instance_id))


def test_a_stopped_instance_is_started_and_a_running_one_left_alone(ec2, instance_id):
    assert ec2_ops.ensure_running(ec2, instance_id) == "running"
    ec2.stop_instances(InstanceIds=[instance_id])
    assert ec2_ops.ensure_running(ec2, instance_id) == "started"
    assert ec2_ops.instance_state(ec2, instance_id) in ("pending", "running")


@pytest.mark.parametrize("gone", ["terminated", "unknown"])
def test_a_terminated_or_unknown_instance_cannot_be_started_and_asks_for_a_new_launch(ec2, instance_id, gone):
    if gone == "terminated":
        ec2.terminate_instances(InstanceIds=[instance_id])
    else:
        instance_id = missing_instance_id()
    with pytest.raises(ec2_ops.InstanceStateError, match="launch a new one") as raised:
        ec2_ops.ensure_running(ec2, instance_id)
    assert raised.value.retry_later is False
    assert ec2_ops.instance_state(ec2, instance_id) in ("terminated", None)  # not started behind our back


def test_user_data_is_sent_base64_encoded_by_boto(ec2, instance_id):
    raw = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")["UserData"]["Value"]
    assert base64.b64decode(raw).startswith(b"#!/bin/bash")


# --- bootstrap outcome ------------------------------------------------------------------------------------------

def _tag(ec2, instance_id: str, **tags: str) -> None:
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])


def test_no_bootstrap_tag_yet_is_no_outcome(ec2, instance_id):
    assert ec2_ops.bootstrap_outcome(ec2, instance_id) == ec2_ops.BootstrapOutcome(status=None, cause=None)


def test_a_running_or_done_bootstrap_has_no_cause_even_when_an_old_one_is_left(ec2, instance_id):
    _tag(ec2, instance_id, **{"vdi:bootstrap": "running"})
    assert ec2_ops.bootstrap_outcome(ec2, instance_id) == ec2_ops.BootstrapOutcome("running", None)
    _tag(ec2, instance_id, **{"vdi:bootstrap": "done", "vdi:bootstrap-cause": "Setup step failed: an earlier try"})
    assert ec2_ops.bootstrap_outcome(ec2, instance_id) == ec2_ops.BootstrapOutcome("done", None)


def test_a_failed_bootstrap_comes_with_its_cause_as_one_short_line(ec2, instance_id):
    _tag(ec2, instance_id, **{"vdi:bootstrap": "failed",
                              "vdi:bootstrap-cause": "Setup step failed: Download the\n\tLeostream agent installer"})
    outcome = ec2_ops.bootstrap_outcome(ec2, instance_id)
    assert outcome == ec2_ops.BootstrapOutcome("failed", "Setup step failed: Download the Leostream agent installer")
    _tag(ec2, instance_id, **{"vdi:bootstrap-cause": "x" * 256})
    assert len(ec2_ops.bootstrap_outcome(ec2, instance_id).cause) == 200


def test_a_failed_bootstrap_without_a_cause_says_so(ec2, instance_id):
    _tag(ec2, instance_id, **{"vdi:bootstrap": "failed"})
    assert ec2_ops.bootstrap_outcome(ec2, instance_id) == ec2_ops.BootstrapOutcome("failed", None)


# --- disposal -----------------------------------------------------------------------------------------------------

def test_terminate_disposes_of_the_instance_and_again_is_fine(ec2, instance_id):
    assert ec2_ops.dispose_instance(ec2, instance_id, "terminate") == "terminated"
    assert ec2_ops.instance_state(ec2, instance_id) == "terminated"
    assert ec2_ops.dispose_instance(ec2, instance_id, "terminate") == "already terminated"
    assert ec2_ops.dispose_instance(ec2, instance_id, "stop") == "already terminated"


def test_stop_keeps_the_disk_and_again_is_fine(ec2, instance_id):
    assert ec2_ops.dispose_instance(ec2, instance_id, "stop") == "stopped"
    assert ec2_ops.instance_state(ec2, instance_id) == "stopped"
    assert ec2_ops.dispose_instance(ec2, instance_id, "stop") == "already stopped"
    assert ec2_ops.dispose_instance(ec2, instance_id, "terminate") == "terminated"


def test_keep_leaves_the_instance_running(ec2, instance_id):
    assert ec2_ops.dispose_instance(ec2, instance_id, "keep") == "kept"
    assert ec2_ops.instance_state(ec2, instance_id) == "running"


def test_disposing_of_an_instance_ec2_does_not_know_is_fine_and_an_unknown_action_is_refused(ec2, instance_id):
    assert ec2_ops.dispose_instance(ec2, missing_instance_id(), "terminate") == "not found"
    with pytest.raises(ValueError, match="terminate, stop, keep"):
        ec2_ops.dispose_instance(ec2, instance_id, "hibernate")
    assert ec2_ops.instance_state(ec2, instance_id) == "running"

import base64
import json
import uuid

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from sandbox.aws.server import ThreadedAwsServer
from tests.plugins.vdi.conftest import our_comments
from tests.sandbox.jira.conftest import ALICE
from vdi import ec2 as ec2_ops
from vdi import provision
from vdi.catalog import DEFAULT_CATALOG_PATH, load_catalog
from vdi.jira import COMMENT_MARKER_PREFIX
from vdi.request import DesktopRequest, parse_issue
from vdi.states import Run
from vdi.steps import Step
from vdi.store import requests as store

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
    # What each launch's token was; that the same generation's token would hand the terminated instance back is
    # shown against the stand-in that honours tokens (test_a_spent_token_hands_back_its_terminated_instance).
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


# --- EC2 faults, through the product's client and the stand-in that answers as EC2 does (sandbox/aws) ---------------

@pytest.fixture
def aws_sandbox(moto_endpoint):
    """moto behind the EC2 fault hook, in this process: the same EC2 state as ``moto_endpoint``; a new one per
    test, so no test meets the client tokens another used."""
    server = ThreadedAwsServer().start()
    yield server
    server.stop()


@pytest.fixture
def product_ec2(aws_sandbox, ec2, monkeypatch):
    """The EC2 client the tasks build (``aws_client``), pointed at the stand-in; its faults cleared afterwards."""
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"region_name": "us-east-1", "endpoint_url": aws_sandbox.url}}))
    yield ec2_ops.aws_client("ec2")
    requests.delete(f"{aws_sandbox.url}/_sandbox/faults", timeout=5).raise_for_status()


def ec2_fault(aws_sandbox, **rule) -> int:
    """Add a fault rule; the call log's sequence number before it."""
    calls = requests.get(f"{aws_sandbox.url}/_sandbox/calls", timeout=5).json()
    requests.post(f"{aws_sandbox.url}/_sandbox/faults", json=rule, timeout=5).raise_for_status()
    return calls[-1]["seq"] if calls else 0


def launches_answered(aws_sandbox, since: int) -> list[tuple[int, bool]]:
    calls = requests.get(f"{aws_sandbox.url}/_sandbox/calls", params={"action": "RunInstances", "since": since},
                         timeout=5).json()
    return [(call["status"], call["replayed"]) for call in calls]


def test_the_products_aws_clients_bound_every_call_and_back_off_on_throttling(aws_sandbox, monkeypatch):
    connection = {"conn_type": "aws", "login": "testing", "password": "testing",
                  "extra": {"region_name": "us-east-1", "endpoint_url": aws_sandbox.url}}
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
    config = ec2_ops.aws_client("ec2").meta.config
    assert (config.connect_timeout, config.read_timeout) == (5, 30)
    assert config.retries == {"mode": "standard", "total_max_attempts": 5}

    connection["extra"]["config_kwargs"] = {"read_timeout": 90}  # the connection's own settings win
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
    config = ec2_ops.aws_client("ec2").meta.config
    assert (config.connect_timeout, config.read_timeout) == (5, 90)
    assert config.retries == {"mode": "standard", "total_max_attempts": 5}


def test_a_throttled_launch_is_retried_by_the_client_and_launches_once(aws_sandbox, product_ec2, params,
                                                                       desktop_request):
    since = ec2_fault(aws_sandbox, action="RunInstances", error="RequestLimitExceeded", times=2)
    instance_id, launched = ec2_ops.launch_once(product_ec2, params, desktop_request.request_id)
    assert launched
    assert launches_answered(aws_sandbox, since) == [(503, False), (503, False), (200, False)]
    assert [i["InstanceId"] for i in ec2_ops.request_instances(product_ec2, desktop_request.request_id)] == [
        instance_id]


def test_throttling_beyond_the_clients_attempts_fails_the_call_for_airflow_to_retry(aws_sandbox, product_ec2,
                                                                                    params, desktop_request):
    since = ec2_fault(aws_sandbox, action="RunInstances", error="RequestLimitExceeded", times=None)
    with pytest.raises(ClientError, match="RequestLimitExceeded"):
        ec2_ops.launch_once(product_ec2, params, desktop_request.request_id)
    assert launches_answered(aws_sandbox, since) == [(503, False)] * 5
    assert ec2_ops.request_instances(product_ec2, desktop_request.request_id) == []


def test_no_capacity_fails_the_launch_in_plain_words_and_a_later_try_launches_under_the_same_token(
        aws_sandbox, product_ec2, params, desktop_request):
    since = ec2_fault(aws_sandbox, action="RunInstances", error="InsufficientInstanceCapacity", times=None)
    with pytest.raises(ec2_ops.CapacityUnavailable) as refused:
        ec2_ops.launch_once(product_ec2, params, desktop_request.request_id)
    assert str(refused.value) == "AWS has no capacity for this desktop size right now; try again later"
    assert f"sufficient {params['InstanceType']} capacity" in refused.value.operator_detail
    assert launches_answered(aws_sandbox, since) == [(500, False)] * 5  # HTTP 500: the client retried it
    assert ec2_ops.request_instances(product_ec2, desktop_request.request_id) == []

    requests.delete(f"{aws_sandbox.url}/_sandbox/faults", timeout=5).raise_for_status()  # capacity is back
    instance_id, launched = ec2_ops.launch_once(product_ec2, params, desktop_request.request_id)
    [instance] = ec2_ops.request_instances(product_ec2, desktop_request.request_id)
    assert launched and instance["InstanceId"] == instance_id and instance["ClientToken"] == params["ClientToken"]


def test_a_launch_whose_answer_was_lost_is_retried_with_its_token_and_launches_once(aws_sandbox, product_ec2,
                                                                                     params, desktop_request):
    since = ec2_fault(aws_sandbox, action="RunInstances", lose_response=True)
    instance_id, launched = ec2_ops.launch_once(product_ec2, params, desktop_request.request_id)
    assert launches_answered(aws_sandbox, since) == [(200, False), (200, True)]  # launched, then handed back
    assert [i["InstanceId"] for i in ec2_ops.request_instances(product_ec2, desktop_request.request_id)] == [
        instance_id]


def test_a_spent_token_hands_back_its_terminated_instance_so_a_relaunch_needs_the_next_generation(
        product_ec2, params, desktop_request, bundle):
    first, _ = ec2_ops.launch_once(product_ec2, params, desktop_request.request_id)
    product_ec2.terminate_instances(InstanceIds=[first])
    again, _ = ec2_ops.launch_once(product_ec2, params, desktop_request.request_id)
    assert again == first and ec2_ops.instance_state(product_ec2, first) in ("shutting-down", "terminated")
    assert ec2_ops.request_instances(product_ec2, desktop_request.request_id) == []

    next_generation = ec2_ops.run_instances_params(desktop_request, bundle, "linux", "us-east-1", USER_DATA, 1,
                                                   ec2=product_ec2)
    second, launched = ec2_ops.launch_once(product_ec2, next_generation, desktop_request.request_id)
    assert launched and second != first
    assert [i["InstanceId"] for i in ec2_ops.request_instances(product_ec2, desktop_request.request_id)] == [second]


def test_the_same_token_with_changed_parameters_is_refused_as_ec2_refuses_it(product_ec2, params,
                                                                              desktop_request):
    first, _ = ec2_ops.launch_once(product_ec2, params, desktop_request.request_id)
    product_ec2.terminate_instances(InstanceIds=[first])
    with pytest.raises(ClientError, match="IdempotentParameterMismatch"):
        ec2_ops.launch_once(product_ec2, {**params, "InstanceType": "m5.large"}, desktop_request.request_id)


# --- the launch step under EC2 faults (real PostgreSQL, the Jira sandbox, EC2 through the stand-in) ----------------

STEP_RUN = Run("delivery-run-ec2")


def claimed_request(conn, jira, ticket, field_config, catalog, ec2) -> DesktopRequest:
    """An approved ticket's request, claimed by ``STEP_RUN`` as the steps before the launch leave it."""
    key = jira.create_request(bundle="standard", user=ALICE)
    jira.transition(key, "11")  # Approve
    request = DesktopRequest.model_validate(provision.validate(ticket, key, field_config, conn, STEP_RUN))
    # Each test's Jira sandbox numbers its tickets from 1, so an earlier test may have left this request's instance.
    if leftovers := [i["InstanceId"] for i in ec2_ops.request_instances(ec2, request.request_id)]:
        ec2.terminate_instances(InstanceIds=leftovers)
    assert provision.dedupe(conn, request, STEP_RUN, "Approved")
    assert provision.persist(conn, ticket, request, STEP_RUN, catalog, "Approved")
    return request


def test_the_launch_step_rides_out_throttling_and_records_its_one_instance(conn, jira, ticket, field_config,
                                                                           aws_sandbox, product_ec2):
    catalog = load_catalog(DEFAULT_CATALOG_PATH)
    request = claimed_request(conn, jira, ticket, field_config, catalog, product_ec2)
    ec2_fault(aws_sandbox, action="RunInstances", error="RequestLimitExceeded", times=2)
    ec2_fault(aws_sandbox, action="DescribeInstances", error="RequestLimitExceeded", times=2)
    instance_id = provision.launch(conn, product_ec2, request, STEP_RUN, catalog, "linux", USER_DATA, 600)
    assert [i["InstanceId"] for i in ec2_ops.request_instances(product_ec2, request.request_id)] == [instance_id]
    assert store.get_request(conn, request.issue_key)["instance_id"] == instance_id


def test_the_launch_step_without_capacity_fails_after_its_tries_with_a_plain_comment_and_no_instance(
        conn, jira, ticket, field_config, aws_sandbox, product_ec2):
    catalog = load_catalog(DEFAULT_CATALOG_PATH)
    request = claimed_request(conn, jira, ticket, field_config, catalog, product_ec2)
    ec2_fault(aws_sandbox, action="RunInstances", error="InsufficientInstanceCapacity", times=None)
    with pytest.raises(ec2_ops.CapacityUnavailable) as refused:
        provision.launch(conn, product_ec2, request, STEP_RUN, catalog, "linux", USER_DATA, 600)
    # The failure callback after the task's last retry.
    provision.record_failure(conn, ticket, request.issue_key, STEP_RUN, Step.LAUNCH_INSTANCE, refused.value,
                             f"{STEP_RUN.run_id}-4", ec2=product_ec2, catalog=catalog)

    assert ticket.status(request.issue_key) == "Failed"
    [comment] = our_comments(ticket, request.issue_key, f"failed-{Step.LAUNCH_INSTANCE}")
    said = comment.split(COMMENT_MARKER_PREFIX)[0]
    assert "Retry" in said and "AWS has no capacity for this desktop size right now" in said
    assert not any(internal in said for internal in ("us-east-1", "InsufficientInstanceCapacity", "arn:", "http"))
    assert ec2_ops.request_instances(product_ec2, request.request_id) == []
    row = store.get_request(conn, request.issue_key)
    assert row["state"] == "failed" and row["instance_id"] is None


def test_no_capacity_to_start_a_stopped_instance_leaves_it_stopped_for_a_later_try(aws_sandbox, product_ec2,
                                                                                    instance_id):
    product_ec2.stop_instances(InstanceIds=[instance_id])
    assert ec2_ops.instance_state(product_ec2, instance_id) == "stopped"
    ec2_fault(aws_sandbox, action="StartInstances", error="InsufficientInstanceCapacity", times=None)
    with pytest.raises(ec2_ops.CapacityUnavailable) as refused:
        ec2_ops.ensure_running(product_ec2, instance_id)
    assert refused.value.operator_detail.startswith(instance_id)
    assert ec2_ops.instance_state(product_ec2, instance_id) == "stopped"
    requests.delete(f"{aws_sandbox.url}/_sandbox/faults", timeout=5).raise_for_status()
    assert ec2_ops.ensure_running(product_ec2, instance_id) == "started"

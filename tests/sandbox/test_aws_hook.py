"""The stack's AWS stand-in (sandbox/aws): moto behind an EC2 fault hook that answers EC2's own errors, and that
honours ``ClientToken`` as EC2 does."""

from __future__ import annotations

import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from sandbox.aws.server import ThreadedAwsServer
from tests.conftest import wait_until

TAG = "vdi:test-token"


@pytest.fixture(scope="module")
def aws():
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ.setdefault(key, value)
    server = ThreadedAwsServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def no_faults(aws):
    yield
    requests.delete(f"{aws.url}/_sandbox/faults", timeout=5).raise_for_status()


def ec2_client(url: str, attempts: int = 1):
    return boto3.client("ec2", endpoint_url=url, region_name="us-east-1",
                        config=Config(retries={"mode": "standard", "total_max_attempts": attempts},
                                      read_timeout=10))


@pytest.fixture
def ec2(aws):
    return ec2_client(aws.url)


@pytest.fixture(scope="module")
def image(aws):
    return ec2_client(aws.url).describe_images(Owners=["amazon"])["Images"][0]["ImageId"]


@pytest.fixture
def launch(image):
    """RunInstances arguments tagged with a marker of this test, so its instances can be counted."""
    marker = uuid.uuid4().hex
    return {"ImageId": image, "InstanceType": "g4dn.xlarge", "MinCount": 1, "MaxCount": 1,
            "ClientToken": f"token-{marker}",
            "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": TAG, "Value": marker}]}]}


def instances_of(ec2, launch) -> list[dict]:
    marker = launch["TagSpecifications"][0]["Tags"][0]["Value"]
    found = ec2.describe_instances(Filters=[{"Name": f"tag:{TAG}", "Values": [marker]}])
    return [i for r in found["Reservations"] for i in r["Instances"]]


def add_fault(aws, **rule) -> dict:
    response = requests.post(f"{aws.url}/_sandbox/faults", json=rule, timeout=5)
    assert response.status_code == 201, response.text
    return response.json()


def calls(aws, action: str, since: int = 0) -> list[dict]:
    return requests.get(f"{aws.url}/_sandbox/calls", params={"action": action, "since": since}, timeout=5).json()


def last_seq(aws) -> int:
    log = requests.get(f"{aws.url}/_sandbox/calls", timeout=5).json()
    return log[-1]["seq"] if log else 0


# --- faults ------------------------------------------------------------------------------------------------------

def test_insufficient_capacity_is_answered_as_ec2_does_then_the_launch_goes_through(aws, ec2, launch):
    fault = add_fault(aws, action="RunInstances", error="InsufficientInstanceCapacity", times=2)
    for _ in range(2):
        with pytest.raises(ClientError) as refused:
            ec2.run_instances(**launch)
        error = refused.value.response
        assert error["Error"]["Code"] == "InsufficientInstanceCapacity"
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 500
        assert "sufficient g4dn.xlarge capacity" in error["Error"]["Message"]
    assert instances_of(ec2, launch) == []
    instance = ec2.run_instances(**launch)["Instances"][0]
    assert [i["InstanceId"] for i in instances_of(ec2, launch)] == [instance["InstanceId"]]
    [listed] = [f for f in requests.get(f"{aws.url}/_sandbox/faults", timeout=5).json() if f["id"] == fault["id"]]
    assert listed["hits"] == 2 and listed["times"] == 0


def test_request_limit_exceeded_is_a_503_that_botocores_standard_retries_ride_out(aws, launch):
    since = last_seq(aws)
    add_fault(aws, action="RunInstances", error="RequestLimitExceeded", times=2)
    ec2 = ec2_client(aws.url, attempts=3)
    instance = ec2.run_instances(**launch)["Instances"][0]
    log = calls(aws, "RunInstances", since)
    assert [c["status"] for c in log] == [503, 503, 200]
    assert {c["client_token"] for c in log} == {launch["ClientToken"]}
    assert [i["InstanceId"] for i in instances_of(ec2, launch)] == [instance["InstanceId"]]


def test_a_fault_matches_only_its_actions_and_every_call_with_times_null(aws, ec2, launch):
    add_fault(aws, action="Describe*", error="RequestLimitExceeded", times=None)
    for _ in range(3):
        with pytest.raises(ClientError, match="RequestLimitExceeded"):
            ec2.describe_instances()
    ec2.run_instances(**launch)  # not a Describe action
    requests.delete(f"{aws.url}/_sandbox/faults", timeout=5).raise_for_status()
    assert len(instances_of(ec2, launch)) == 1


def test_faults_leave_other_aws_services_alone(aws):
    add_fault(aws, action="*", error="InternalError", times=None)
    s3 = boto3.client("s3", endpoint_url=aws.url, region_name="us-east-1")
    bucket = f"hook-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    assert s3.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    sts = boto3.client("sts", endpoint_url=aws.url, region_name="us-east-1")
    assert sts.get_caller_identity()["Account"].isdigit()


@pytest.mark.parametrize("rule", [
    {"error": "InsufficientInstanceCapacity"},  # no action
    {"action": "RunInstances", "error": "SomethingElse"},  # unknown code without a status
    {"action": "RunInstances", "error": "InternalError", "status": 200},
    {"action": "RunInstances"},  # nothing to do
    {"action": "RunInstances", "error": "InternalError", "lose_response": True},
    {"action": "RunInstances", "error": "InternalError", "hold_ms": 100},  # an error is not handled by moto
    {"action": "RunInstances", "hold_ms": 120_001},
    {"action": "RunInstances", "error": "InternalError", "times": 0},
    {"action": "RunInstances", "error": "InternalError", "path": "/"},
])
def test_a_bad_fault_is_refused_and_adds_nothing(aws, rule):
    response = requests.post(f"{aws.url}/_sandbox/faults", json=rule, timeout=5)
    assert response.status_code == 400 and response.json()["error"]
    assert requests.get(f"{aws.url}/_sandbox/faults", timeout=5).json() == []


def test_latency_delays_the_call_by_at_least_its_milliseconds(aws, ec2):
    add_fault(aws, action="DescribeRegions", latency_ms=300)
    started = time.monotonic()
    ec2.describe_regions()
    assert time.monotonic() - started >= 0.3


def test_a_held_answer_comes_after_the_call_has_taken_effect(aws, ec2, launch):
    add_fault(aws, action="RunInstances", hold_ms=1500)
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(ec2_client(aws.url).run_instances, **launch)
        [instance] = wait_until(lambda: instances_of(ec2, launch), 10, "the instance launched", interval_s=0.05)
        assert not answer.done(), "the answer came before the hold was over"
        assert answer.result(timeout=10)["Instances"][0]["InstanceId"] == instance["InstanceId"]


# --- ClientToken ---------------------------------------------------------------------------------------------------

def test_a_repeated_client_token_answers_the_original_instance_and_launches_nothing(ec2, launch):
    first = ec2.run_instances(**launch)
    again = ec2.run_instances(**launch)
    assert again["ReservationId"] == first["ReservationId"]
    assert [i["InstanceId"] for i in again["Instances"]] == [i["InstanceId"] for i in first["Instances"]]
    [instance] = instances_of(ec2, launch)
    assert instance["ClientToken"] == launch["ClientToken"]


def test_a_client_token_is_remembered_after_its_instance_terminated(ec2, launch):
    instance_id = ec2.run_instances(**launch)["Instances"][0]["InstanceId"]
    ec2.terminate_instances(InstanceIds=[instance_id])
    assert ec2.run_instances(**launch)["Instances"][0]["InstanceId"] == instance_id
    states = [i["State"]["Name"] for i in instances_of(ec2, launch)]
    assert len(states) == 1 and states[0] in ("shutting-down", "terminated")


def test_the_same_client_token_with_other_parameters_is_an_idempotent_parameter_mismatch(ec2, launch):
    ec2.run_instances(**launch)
    with pytest.raises(ClientError) as refused:
        ec2.run_instances(**{**launch, "InstanceType": "g4dn.2xlarge"})
    assert refused.value.response["Error"]["Code"] == "IdempotentParameterMismatch"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert len(instances_of(ec2, launch)) == 1


def test_a_failed_launch_leaves_its_token_free_for_the_retry(aws, ec2, launch):
    add_fault(aws, action="RunInstances", error="InsufficientInstanceCapacity")
    with pytest.raises(ClientError, match="InsufficientInstanceCapacity"):
        ec2.run_instances(**launch)
    assert len(ec2.run_instances(**launch)["Instances"]) == 1
    assert len(instances_of(ec2, launch)) == 1


def test_a_lost_response_retried_with_its_token_gives_the_one_instance_launched(aws, launch):
    since = last_seq(aws)
    add_fault(aws, action="RunInstances", lose_response=True)
    ec2 = ec2_client(aws.url, attempts=3)
    instance_id = ec2.run_instances(**launch)["Instances"][0]["InstanceId"]
    assert [i["InstanceId"] for i in instances_of(ec2, launch)] == [instance_id]
    assert [(c["status"], c["replayed"]) for c in calls(aws, "RunInstances", since)] == [(200, False), (200, True)]


def test_concurrent_launches_with_one_token_launch_once(aws, launch):
    clients = [ec2_client(aws.url) for _ in range(6)]
    with ThreadPoolExecutor(len(clients)) as pool:
        ids = set(pool.map(lambda client: client.run_instances(**launch)["Instances"][0]["InstanceId"], clients))
    assert len(ids) == 1
    assert len(instances_of(clients[0], launch)) == 1


def test_without_a_client_token_every_launch_is_a_new_instance(ec2, launch):
    unkeyed = {key: value for key, value in launch.items() if key != "ClientToken"}
    ec2.run_instances(**unkeyed)
    ec2.run_instances(**unkeyed)
    assert len(instances_of(ec2, launch)) == 2

"""Least privilege, proven: the provisioning steps and the terminate path run against moto with IAM enforcement on,
as an IAM user holding only the Airflow workers' policy, and calls outside that policy are refused.

What moto 5.2.5 enforces (``moto.iam.access_control``): the signature, and each call's action against the
policy's ``Action`` elements, for every service; the ``Resource`` elements only for S3 (an EC2, IAM or Secrets
Manager call is matched against the resource ``*``, so a statement scoped to ARNs never matches there); no
condition (none has a value to compare, so every condition passes); no ``iam:PassRole`` check in RunInstances.
So the user holds the policy as moto can read it: each non-S3 statement with its resources widened to ``*``, every
condition dropped, the S3 statements as written; moto then proves the action list and the S3 scope. The
resource and condition scope of the policy as committed (images, subnets, instance types, tags at launch, tagged
instances only, the desktop role only) is judged by ``iam_simulation`` on the very calls the steps made.
"""

from __future__ import annotations

import json
from dataclasses import replace

import boto3
import pytest
import yaml
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.core.authorization import enable_iam_authentication

from tests.conftest import wait_until
from tests.plugins.vdi.iam_simulation import (
    ACCOUNT,
    AuthorizationRequest,
    CallRecorder,
    RecordedCall,
    authorization_requests,
    is_allowed,
)
from tests.plugins.vdi.test_provision import DEADLINE_S, WEBHOOK_RUN, approved_ticket, claimed, failed_at
from vdi import ec2 as ec2_ops
from vdi import iam, provision
from vdi.catalog import DEFAULT_CATALOG_PATH, load_catalog
from vdi.steps import Step
from vdi.userdata import desktop_user_data

REGION = "ca-central-1"  # a region of the shared moto server that only these tests use
BUCKET = "vdi-playbooks-iam-test"
ADMIN = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
BOUNDED = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 1})


def test_the_committed_policies_are_what_the_catalog_renders():
    for path, text in iam.committed_documents().items():
        assert path.read_text() == text, f"{path.name} is stale: run python -m vdi.iam write-committed"


def test_the_workers_policy_names_each_catalog_image_instance_type_and_the_desktop_role():
    catalog = load_catalog(DEFAULT_CATALOG_PATH)
    policy = iam.workers_policy(catalog, playbook_bucket="studio-playbooks", account="111122223333")
    text = json.dumps(policy)
    for bundle in catalog.bundles.values():
        assert bundle.instance_type in text
        for by_region in bundle.images.values():
            assert all(f"image/{ami}" in text for ami in by_region.values())
    assert "arn:aws:iam::111122223333:role/vdi-desktop" in text
    assert "arn:aws:s3:::studio-playbooks/vdi/playbooks/*" in text


def moto_view(policy: dict) -> dict:
    """The policy as moto evaluates it: non-S3 resources widened to ``*``, conditions dropped."""
    statements = []
    for statement in policy["Statement"]:
        statement = {k: v for k, v in statement.items() if k != "Condition"}
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if not all(action.startswith("s3:") for action in actions):
            statement["Resource"] = "*"
        statements.append(statement)
    return {**policy, "Statement": statements}


@pytest.fixture(scope="module")
def images(moto_endpoint) -> list[str]:
    ec2 = boto3.client("ec2", endpoint_url=moto_endpoint, region_name=REGION, **ADMIN)
    return [image["ImageId"] for image in ec2.describe_images(Owners=["amazon"])["Images"][:2]]


def catalog_in_region(tmp_path, image: str, **overrides):
    data = yaml.safe_load(DEFAULT_CATALOG_PATH.read_text())
    data["region"] = REGION
    for bundle in data["bundles"].values():
        bundle["images"] = {os_family: {REGION: image} for os_family in bundle["images"]}
        bundle.update(overrides)
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_catalog(path)


def resource_tags(resource_id: str) -> dict[str, str]:
    """An instance's or volume's tags read from moto's backend (in process, outside IAM)."""
    from moto.ec2.models import ec2_backends

    return dict(ec2_backends[ACCOUNT][REGION].tags.get(resource_id, {}))


@pytest.fixture
def worker(moto_endpoint, tmp_path, images):
    """An IAM user holding only the workers' policy for a catalog in this region; its clients record their calls.
    Set up with moto's default keys before enforcement is switched on by the test."""
    catalog = catalog_in_region(tmp_path, images[0])
    policy = iam.workers_policy(catalog, playbook_bucket=BUCKET)
    admin_iam = boto3.client("iam", endpoint_url=moto_endpoint, region_name=REGION, **ADMIN)
    admin_iam.create_policy(PolicyName=f"vdi-workers-{tmp_path.name}", PolicyDocument=json.dumps(policy))
    name = f"airflow-worker-{tmp_path.name}"[:64]
    admin_iam.create_user(UserName=name)
    admin_iam.put_user_policy(UserName=name, PolicyName="vdi-workers", PolicyDocument=json.dumps(moto_view(policy)))
    key = admin_iam.create_access_key(UserName=name)["AccessKey"]
    try:
        admin_iam.create_role(RoleName="vdi-desktop", AssumeRolePolicyDocument=json.dumps(iam.desktop_trust_policy()))
        admin_iam.create_instance_profile(InstanceProfileName="vdi-desktop")
        admin_iam.add_role_to_instance_profile(InstanceProfileName="vdi-desktop", RoleName="vdi-desktop")
    except admin_iam.exceptions.EntityAlreadyExistsException:
        pass
    admin_s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", **ADMIN)
    admin_s3.create_bucket(Bucket=BUCKET)
    credentials = {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
    recorder = CallRecorder(resource_tags)
    clients = {}
    for service in ("ec2", "s3", "secretsmanager"):
        clients[service] = boto3.client(service, endpoint_url=moto_endpoint, region_name=REGION, config=BOUNDED,
                                        **credentials)
        recorder.attach(clients[service])
    admin_ec2 = boto3.client("ec2", endpoint_url=moto_endpoint, region_name=REGION, **ADMIN)
    outsider = admin_ec2.run_instances(ImageId=images[0], InstanceType="t3.micro", MinCount=1,
                                       MaxCount=1)["Instances"][0]["InstanceId"]
    yield {"catalog": catalog, "policy": policy, "clients": clients, "recorder": recorder, "outsider": outsider,
           "other_image": images[1]}
    admin_ec2.terminate_instances(InstanceIds=[outsider])


def refused(call) -> bool:
    """True when AWS answered 403 (moto's AccessDenied, whatever each service calls the code)."""
    with pytest.raises(ClientError) as raised:
        call()
    return raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_the_steps_launch_stop_start_snapshot_and_terminate_a_desktop_with_only_the_workers_policy(
        worker, conn, jira, ticket, field_config):
    catalog, policy, recorder = worker["catalog"], worker["policy"], worker["recorder"]
    ec2, s3 = worker["clients"]["ec2"], worker["clients"]["s3"]
    request = claimed(conn, ticket, approved_ticket(jira), catalog, field_config)
    os_family = catalog.resolve_os(request)
    with enable_iam_authentication():
        user_data = desktop_user_data(request, os_family, broker_address="broker.studio.internal", region=REGION,
                                      display_protocol="rdp", playbook_bucket=BUCKET, s3_client=s3)
        instance_id = provision.launch(conn, ec2, request, WEBHOOK_RUN, catalog, os_family, user_data, DEADLINE_S)
        wait_until(lambda: provision.instance_ready(conn, ec2, request, WEBHOOK_RUN, instance_id),
                   message="the instance")
        assert provision.bootstrap_finished(conn, ec2, request, WEBHOOK_RUN, instance_id, DEADLINE_S) is False
        assert ec2_ops.dispose_instance(ec2, instance_id, "stop") == "stopped"
        wait_until(lambda: ec2_ops.instance_state(ec2, instance_id) == "stopped", message="the stop")
        assert provision.launch(conn, ec2, request, WEBHOOK_RUN, catalog, os_family, user_data,
                                DEADLINE_S) == instance_id  # started again
        instance = ec2_ops.find_request_instance(ec2, str(request.request_id))
        snapshot = ec2_ops.snapshot_root_volume(ec2, instance, {"vdi:request": str(request.request_id),
                                                                "vdi:issue": request.issue_key})
        assert snapshot and snapshot["SnapshotId"].startswith("snap-")
        failed_at(conn, ticket, ec2, catalog, request, Step.WAIT_BOOTSTRAP, TimeoutError())
        assert ec2_ops.instance_state(ec2, instance_id) in ("shutting-down", "terminated")

    assert {"ec2:RunInstances", "ec2:StopInstances", "ec2:StartInstances", "ec2:CreateSnapshot",
            "ec2:TerminateInstances", "s3:PutObject"} <= recorder.operations()
    judged = [(call.operation, request) for call in recorder.calls for request in authorization_requests(call)]
    assert [(operation, r) for operation, r in judged if not is_allowed(policy, r)] == []
    assert {r.action for _, r in judged} >= {"ec2:CreateTags", "iam:PassRole"}


def test_moto_refuses_calls_whose_action_or_s3_object_is_outside_the_workers_policy(worker):
    ec2, s3, secrets = (worker["clients"][s] for s in ("ec2", "s3", "secretsmanager"))
    with enable_iam_authentication():
        assert refused(lambda: ec2.modify_instance_attribute(InstanceId=worker["outsider"],
                                                             DisableApiTermination={"Value": True}))
        assert refused(lambda: ec2.create_security_group(GroupName="open", Description="x"))
        assert refused(lambda: s3.put_object(Bucket=BUCKET, Key="elsewhere/evil.sh", Body=b"x"))
        assert refused(lambda: secrets.create_secret(Name="airflow/connections/x", SecretString="x"))
        # What the policy does allow goes through, so the refusals above are the policy's.
        s3.put_object(Bucket=BUCKET, Key="vdi/playbooks/ok.tar.gz", Body=b"x")


def run_instances_call(worker, **changes) -> RecordedCall:
    """RunInstances parameters shaped as ``vdi.ec2.run_instances_params`` makes them, with ``changes``."""
    bundle = worker["catalog"].bundles["standard"]
    params = {
        "ImageId": bundle.images["linux"][REGION], "InstanceType": bundle.instance_type, "MinCount": 1,
        "MaxCount": 1, "MetadataOptions": {"HttpTokens": "required"}, "IamInstanceProfile": {"Name": "vdi-desktop"},
        "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 100, "Encrypted": True}}],
        "TagSpecifications": [{"ResourceType": kind, "Tags": [
            {"Key": "Name", "Value": "vdi-vdi-7"}, {"Key": "vdi:issue", "Value": "VDI-7"},
            {"Key": "vdi:request", "Value": "r-7"}, {"Key": "vdi:user", "Value": "ada"}]}
            for kind in ("instance", "volume")],
    }
    params.update(changes)
    response = {"Instances": [{"SubnetId": "subnet-0default", "SecurityGroups": [{"GroupId": "sg-0default"}]}]}
    return RecordedCall("ec2", "RunInstances", params, REGION, response=response)


def allowed(policy, call: RecordedCall) -> bool:
    return all(is_allowed(policy, request) for request in authorization_requests(call))


def test_the_workers_policy_refuses_another_image_instance_type_role_or_launch_without_the_products_tags(worker):
    policy = worker["policy"]
    assert allowed(policy, run_instances_call(worker))
    assert not allowed(policy, run_instances_call(worker, ImageId=worker["other_image"]))
    assert not allowed(policy, run_instances_call(worker, InstanceType="p5.48xlarge"))
    assert not allowed(policy, run_instances_call(worker, IamInstanceProfile={"Name": "admin"}))
    assert not allowed(policy, run_instances_call(worker, TagSpecifications=[]))
    assert not allowed(policy, run_instances_call(worker, MetadataOptions={"HttpTokens": "optional"}))
    unencrypted = [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 100, "Encrypted": False}}]
    assert not allowed(policy, run_instances_call(worker, BlockDeviceMappings=unencrypted))


def test_the_workers_policy_refuses_stopping_terminating_or_snapshotting_what_the_product_did_not_tag(worker):
    policy = worker["policy"]
    untagged = RecordedCall("ec2", "TerminateInstances", {"InstanceIds": ["i-0outsider"]}, REGION, {"i-0outsider": {}})
    tagged = replace(untagged, resource_tags={"i-0outsider": {"vdi:request": "r-7"}})
    assert not allowed(policy, untagged)
    assert not allowed(policy, replace(untagged, operation="StopInstances"))
    assert allowed(policy, tagged)
    snapshot = RecordedCall("ec2", "CreateSnapshot", {"VolumeId": "vol-0outsider", "TagSpecifications": [
        {"ResourceType": "snapshot", "Tags": [{"Key": "vdi:request", "Value": "r-7"}]}]}, REGION, {"vol-0outsider": {}})
    assert not allowed(policy, snapshot)
    assert allowed(policy, replace(snapshot, resource_tags={"vol-0outsider": {"vdi:request": "r-7"}}))


def test_the_workers_policy_refuses_tags_set_after_launch_and_objects_outside_the_playbook_prefix(worker):
    policy = worker["policy"]
    retag = RecordedCall("ec2", "CreateTags", {"Resources": ["i-0outsider"],
                                               "Tags": [{"Key": "vdi:request", "Value": "r-7"}]}, REGION)
    assert not allowed(policy, retag)
    put = RecordedCall("s3", "PutObject", {"Bucket": BUCKET, "Key": "vdi/playbooks/x.tar.gz"}, REGION)
    assert allowed(policy, put)
    assert not allowed(policy, replace(put, params={"Bucket": BUCKET, "Key": "other/x.tar.gz"}))
    assert not allowed(policy, replace(put, params={"Bucket": "another-bucket", "Key": "vdi/playbooks/x.tar.gz"}))


def test_with_subnets_pinned_in_the_catalog_a_launch_into_another_subnet_is_refused(tmp_path, images):
    catalog = catalog_in_region(tmp_path, images[0], subnet_id="subnet-0abc", security_group_ids=["sg-0abc"])
    policy = iam.workers_policy(catalog, playbook_bucket=BUCKET)
    worker = {"catalog": catalog}
    pinned = run_instances_call(worker, SubnetId="subnet-0abc", SecurityGroupIds=["sg-0abc"])
    assert allowed(policy, pinned)
    assert not allowed(policy, replace(pinned, params={**pinned.params, "SubnetId": "subnet-0other"}))
    assert not allowed(policy, replace(pinned, params={**pinned.params, "SecurityGroupIds": ["sg-0open"]}))


def test_the_desktop_role_reads_bundles_and_its_own_secrets_and_tags_only_itself_with_the_bootstrap_outcome():
    policy = iam.desktop_policy(region=REGION, playbook_bucket=BUCKET)
    own = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0own"
    other = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0other"

    def tag(resource: str, *keys: str) -> AuthorizationRequest:
        return AuthorizationRequest("ec2:CreateTags", resource, {
            "aws:ARN": resource, "ec2:SourceInstanceARN": own, "aws:TagKeys": list(keys),
            **{f"aws:RequestTag/{k}": "done" for k in keys}})

    assert is_allowed(policy, tag(own, "vdi:bootstrap", "vdi:bootstrap-cause"))
    assert not is_allowed(policy, tag(other, "vdi:bootstrap"))
    assert not is_allowed(policy, tag(own, "vdi:request"))
    secret = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:"
    assert is_allowed(policy, AuthorizationRequest("secretsmanager:GetSecretValue", secret + "vdi/desktop/lic-AbCdEf"))
    assert not is_allowed(policy, AuthorizationRequest("secretsmanager:GetSecretValue",
                                                       secret + "airflow/connections/jira_default-AbCdEf"))
    bundle = f"arn:aws:s3:::{BUCKET}/vdi/playbooks/{'0' * 64}.tar.gz"
    assert is_allowed(policy, AuthorizationRequest("s3:GetObject", bundle))
    assert not is_allowed(policy, AuthorizationRequest("s3:PutObject", bundle))

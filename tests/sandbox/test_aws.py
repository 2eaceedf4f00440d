"""moto stands in for AWS: boto3, unchanged, against the moto server the stack starts (EC2, S3, Secrets Manager,
STS, IAM)."""

from __future__ import annotations

import json
import uuid

import boto3


def client(moto_endpoint: str, service: str):
    return boto3.client(service, endpoint_url=moto_endpoint, region_name="us-east-1")


def test_ec2_launches_tags_and_describes_instances(moto_endpoint):
    ec2 = client(moto_endpoint, "ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    launched = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="g4dn.xlarge",
                                 UserData="#!/bin/bash\necho hi", TagSpecifications=[{
                                     "ResourceType": "instance", "Tags": [{"Key": "vdi:issue", "Value": "VDI-42"}]}])
    instance_id = launched["Instances"][0]["InstanceId"]
    ec2.get_waiter("instance_running").wait(InstanceIds=[instance_id], WaiterConfig={"Delay": 1})
    found = ec2.describe_instances(Filters=[{"Name": "tag:vdi:issue", "Values": ["VDI-42"]}])
    [instance] = [i for r in found["Reservations"] for i in r["Instances"]]
    assert instance["InstanceId"] == instance_id and instance["State"]["Name"] == "running"
    ec2.terminate_instances(InstanceIds=[instance_id])
    state = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state in ("shutting-down", "terminated")


def test_s3_secrets_manager_sts_and_iam_answer(moto_endpoint):
    s3 = client(moto_endpoint, "s3")
    s3.create_bucket(Bucket="vdi-playbooks")
    s3.put_object(Bucket="vdi-playbooks", Key="bundle.tar.gz", Body=b"playbook")
    assert s3.get_object(Bucket="vdi-playbooks", Key="bundle.tar.gz")["Body"].read() == b"playbook"

    unique = uuid.uuid4().hex[:8]  # the session's moto server is shared: other tests make the product's names
    secrets = client(moto_endpoint, "secretsmanager")
    secrets.create_secret(Name=f"vdi/desktop/VDI-{unique}", SecretString=json.dumps({"password": "p"}))
    assert json.loads(secrets.get_secret_value(SecretId=f"vdi/desktop/VDI-{unique}")["SecretString"]) == {
        "password": "p"}

    assert client(moto_endpoint, "sts").get_caller_identity()["Account"].isdigit()
    iam = client(moto_endpoint, "iam")
    role = f"vdi-desktop-{unique}"
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))
    assert iam.get_role(RoleName=role)["Role"]["RoleName"] == role

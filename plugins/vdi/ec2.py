"""EC2 launch for a desktop request: look up the request's tagged instance first, then launch once. The AWS
clients come from the Airflow connection ``aws_default`` through the Amazon provider's hook."""

from __future__ import annotations

import base64
from typing import Any

from vdi.catalog import Bundle
from vdi.request import DesktopRequest

AWS_CONN_ID = "aws_default"
TAG_ISSUE = "vdi:issue"
TAG_REQUEST = "vdi:request"
TAG_USER = "vdi:user"
# An instance in one of these states is the request's desktop; terminated ones are history.
LIVE_STATES = ("pending", "running", "stopping", "stopped")


def aws_client(service: str, conn_id: str = AWS_CONN_ID):
    """A boto3 client for ``service`` (``ec2``, ``s3``) from the connection: credentials, region, endpoint."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(aws_conn_id=conn_id, client_type=service).get_conn()


def instance_name(issue_key: str) -> str:
    """The instance's Name tag, which the broker shows as the desktop's name."""
    return f"vdi-{issue_key.lower()}"


def client_token(request: DesktopRequest) -> str:
    """RunInstances idempotency token: one launch per request, even when the call is retried."""
    return f"vdi-{request.request_id}"


def run_instances_params(request: DesktopRequest, bundle: Bundle, os_family: str, region: str,
                         user_data: str) -> dict[str, Any]:
    """The boto3 ``run_instances`` arguments for the request's desktop."""
    tags = [
        {"Key": "Name", "Value": instance_name(request.issue_key)},
        {"Key": TAG_ISSUE, "Value": request.issue_key},
        {"Key": TAG_REQUEST, "Value": str(request.request_id)},
        {"Key": TAG_USER, "Value": request.user.login},
    ]
    params: dict[str, Any] = {
        "ImageId": bundle.image_for(os_family, region),
        "InstanceType": bundle.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "ClientToken": client_token(request),
        "UserData": user_data,
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 1},
        "BlockDeviceMappings": [{
            "DeviceName": "/dev/sda1",
            "Ebs": {"VolumeSize": bundle.root_volume.size_gb, "VolumeType": bundle.root_volume.type,
                    "Encrypted": True, "DeleteOnTermination": True},
        }],
        "TagSpecifications": [{"ResourceType": "instance", "Tags": tags},
                              {"ResourceType": "volume", "Tags": tags}],
    }
    if bundle.instance_profile:
        params["IamInstanceProfile"] = {"Name": bundle.instance_profile}
    if bundle.subnet_id:
        params["SubnetId"] = bundle.subnet_id
    if bundle.security_group_ids:
        params["SecurityGroupIds"] = list(bundle.security_group_ids)
    return params


def find_request_instance(ec2, request_id: str) -> dict[str, Any] | None:
    """The live instance tagged with this request, if any (the oldest, should there be several)."""
    pages = ec2.get_paginator("describe_instances").paginate(Filters=[
        {"Name": f"tag:{TAG_REQUEST}", "Values": [str(request_id)]},
        {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
    ])
    instances = [i for page in pages for r in page["Reservations"] for i in r["Instances"]]
    return min(instances, key=lambda i: i["LaunchTime"]) if instances else None


def launch_once(ec2, params: dict[str, Any], request_id) -> tuple[str, bool]:
    """The request's instance id, launching it only when no instance is tagged with ``request_id``;
    (id, launched now)."""
    if existing := find_request_instance(ec2, request_id):
        return existing["InstanceId"], False
    reservation = ec2.run_instances(**params)
    return reservation["Instances"][0]["InstanceId"], True


def instance_status(ec2, instance_id: str) -> dict[str, str]:
    """State and status checks: ``{"state", "instance_check", "system_check"}``."""
    statuses = ec2.describe_instance_status(InstanceIds=[instance_id], IncludeAllInstances=True)["InstanceStatuses"]
    if not statuses:
        return {"state": "unknown", "instance_check": "unknown", "system_check": "unknown"}
    status = statuses[0]
    return {
        "state": status["InstanceState"]["Name"],
        "instance_check": status.get("InstanceStatus", {}).get("Status", "unknown"),
        "system_check": status.get("SystemStatus", {}).get("Status", "unknown"),
    }


def is_ready(status: dict[str, str]) -> bool:
    return status["state"] == "running" and status["instance_check"] == "ok" and status["system_check"] == "ok"


def decoded_user_data(ec2, instance_id: str) -> str:
    value = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")["UserData"].get("Value", "")
    return base64.b64decode(value).decode() if value else ""

"""What a studio's platform team sets up once, done for the local stack: the desktops' IAM instance profile
and the playbook bucket in moto, and the broker's AWS center in the Leostream sandbox. Idempotent."""

from __future__ import annotations

import json

import boto3

from sandbox.stack.errors import StackError
from sandbox.stack.settings import StackSettings

INSTANCE_PROFILE = "vdi-desktop"
CENTER_NAME = "AWS us-east-1"
_ASSUME_EC2 = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})


def seed_aws(endpoint_url: str, bucket: str, region: str = "us-east-1") -> None:
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                    region_name=region)
    iam = session.client("iam", endpoint_url=endpoint_url)
    if INSTANCE_PROFILE not in {r["RoleName"] for r in iam.list_roles()["Roles"]}:
        iam.create_role(RoleName=INSTANCE_PROFILE, AssumeRolePolicyDocument=_ASSUME_EC2)
    profiles = {p["InstanceProfileName"]: p for p in iam.list_instance_profiles()["InstanceProfiles"]}
    if INSTANCE_PROFILE not in profiles:
        iam.create_instance_profile(InstanceProfileName=INSTANCE_PROFILE)
        profiles[INSTANCE_PROFILE] = {"Roles": []}
    if not profiles[INSTANCE_PROFILE]["Roles"]:
        iam.add_role_to_instance_profile(InstanceProfileName=INSTANCE_PROFILE, RoleName=INSTANCE_PROFILE)
    s3 = session.client("s3", endpoint_url=endpoint_url)
    if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=bucket)


def seed_broker(leostream_url: str, user: str, password: str, region: str = "us-east-1") -> int:
    """The broker's AWS center (attached-role auth, as the broker's own instance role would); its id. Its region
    is also where the sandbox's first-boot stand-in looks for the desktops the product launches."""
    from vdi.leostream import LeostreamClient

    with LeostreamClient(leostream_url, user, password) as client:
        for center in client.centers():
            if center["name"] == CENTER_NAME:
                return int(center["id"])
        stored = client.request("POST", "/centers/amazon", json={"center_definition": {
            "name": CENTER_NAME, "type": "amazon", "vc_auth_method": "attached_role", "vc_datacenter": region,
            "poll_interval": 0, "offer_vms": 1, "wait_inst_status": 1, "wait_sys_status": 1,
        }})["stored_data"]
        return int(stored["id"])


def seed_local_services(settings: StackSettings) -> None:
    env = settings.stack_env()
    try:
        seed_aws(env["AWS_ENDPOINT_URL"], settings.runtime_env()["VDI_PLAYBOOK_BUCKET"])
        seed_broker(env["LEOSTREAM_URL"], env["LEOSTREAM_USER"], env["LEOSTREAM_PASSWORD"])
    except Exception as error:
        raise StackError(f"seeding moto and the Leostream sandbox failed: {type(error).__name__}: {error}") from None

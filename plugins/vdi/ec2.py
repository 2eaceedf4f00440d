"""EC2 for a desktop request: launch once per launch generation, start a stopped instance, read the bootstrap's
outcome, dispose of a failed request's instance, snapshot a removed desktop's root volume. The AWS clients come
from the Airflow connection ``aws_default`` through the Amazon provider's hook."""

from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, get_args

from vdi.request import DesktopRequest

if TYPE_CHECKING:
    from vdi.catalog import Bundle

AWS_CONN_ID = "aws_default"
# botocore's limits on every call of the product's AWS clients. The "standard" retry mode retries throttling
# (EC2's RequestLimitExceeded, HTTP 503) and transient errors (HTTP 500/502/503/504, a dropped connection) with
# exponential backoff and jitter (at most 20 s a wait): 5 attempts ride out a short throttle in about 15 s, then
# Airflow's retry of the task takes over, which holds no slot while it waits. ("adaptive" mode's client-side rate
# limiter learns within one client; a task's client makes a handful of calls and is gone.) A call that must not
# run twice carries its idempotency token (``ClientToken``), so retrying it is safe. The connection's
# ``config_kwargs`` extra overrides any of these.
AWS_CALL_LIMITS: dict[str, Any] = {"connect_timeout": 5, "read_timeout": 30,
                                   "retries": {"mode": "standard", "total_max_attempts": 5}}
# EC2 has none of this instance type left where the launch asked (HTTP 500, so botocore has retried it already).
CAPACITY_ERROR_CODES = ("InsufficientInstanceCapacity",)
TAG_ISSUE = "vdi:issue"
TAG_REQUEST = "vdi:request"
TAG_USER = "vdi:user"
# The bootstrap's completion signal and, on failure, its cause in plain words; written by the desktop itself
# (include/ansible, the user data templates). The keys are the defaults of vdi_bootstrap_tag_key and
# vdi_bootstrap_cause_tag_key in include/ansible/group_vars/all/vdi.yml.
BOOTSTRAP_TAG_KEY = "vdi:bootstrap"
BOOTSTRAP_CAUSE_TAG_KEY = "vdi:bootstrap-cause"
BOOTSTRAP_RUNNING, BOOTSTRAP_DONE, BOOTSTRAP_FAILED = "running", "done", "failed"
# An instance in one of these states is the request's desktop; terminated ones are history.
LIVE_STATES = ("pending", "running", "stopping", "stopped")
# What becomes of a failed request's instance (the catalog's on_failure).
DisposeAction = Literal["terminate", "stop", "keep"]
# EC2 keeps tag values up to 256 characters; a cause is meant to be read in a Jira comment.
_MAX_CAUSE = 200


class ImageUnavailable(LookupError):
    """The catalog names an image this account cannot launch in the region."""


class CapacityUnavailable(RuntimeError):
    """EC2 has no capacity for the desktop's instance type right now, to launch it or to start it again. A retry
    later usually finds some (Airflow retries the task); the message is in plain words for the requester,
    ``operator_detail`` is EC2's own about ``subject`` (the instance type, or the instance)."""

    def __init__(self, subject: str, ec2_message: str):
        super().__init__("AWS has no capacity for this desktop size right now; try again later")
        self.subject = subject
        self.ec2_message = ec2_message
        self.operator_detail = f"{subject}: {ec2_message}"

    def __reduce__(self):
        return type(self), (self.subject, self.ec2_message)


class InstanceStateError(RuntimeError):
    """The instance is in a state the operation cannot work from; ``retry_later`` when waiting will help."""

    def __init__(self, message: str, *, state: str | None, retry_later: bool):
        super().__init__(message)
        self.state = state
        self.retry_later = retry_later


class BootstrapOutcome(NamedTuple):
    """The instance's ``vdi:bootstrap`` tag (``running``, ``done``, ``failed``; None before the bootstrap writes
    one) and, when failed, its ``vdi:bootstrap-cause`` (None when it wrote none)."""

    status: str | None
    cause: str | None


def aws_client(service: str, conn_id: str = AWS_CONN_ID):
    """A boto3 client for ``service`` (``ec2``, ``s3``) from the connection (credentials, region, endpoint), with
    ``AWS_CALL_LIMITS`` under the connection's own ``config_kwargs``."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    hook = AwsBaseHook(aws_conn_id=conn_id, client_type=service)
    return hook.get_client_type(region_name=hook.region_name, config=call_config(hook.config))


def call_config(connection_config=None):
    """botocore's ``Config``: ``AWS_CALL_LIMITS``, with what ``connection_config`` sets winning."""
    from botocore.config import Config

    limits = Config(**AWS_CALL_LIMITS)
    return limits.merge(connection_config) if connection_config is not None else limits


def instance_name(issue_key: str) -> str:
    """The instance's Name tag, which the broker shows as the desktop's name."""
    return f"vdi-{issue_key.lower()}"


def client_token(request: DesktopRequest, generation: int) -> str:
    """RunInstances idempotency token: one launch per request and launch generation, even when the call is retried.

    AWS remembers a token for at least 24 hours after its instance terminates (and answers
    ``IdempotentParameterMismatch`` when the parameters changed), so a terminated or lost instance needs the next
    generation. Generation 0 is the token of the first launch, ``vdi-<request id>``, as before generations existed.
    """
    if generation < 0:
        raise ValueError(f"launch generation must be 0 or more, not {generation}")
    base = f"vdi-{request.request_id}"
    return base if generation == 0 else f"{base}-g{generation}"


def image_root_device(ec2, image_id: str) -> str:
    """The image's root device name (``/dev/sda1``, ``/dev/xvda``, ...): the device the root volume is mapped to."""
    from botocore.exceptions import ClientError

    try:
        images = ec2.describe_images(ImageIds=[image_id])["Images"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("InvalidAMIID.NotFound", "InvalidAMIID.Malformed"):
            raise
        images = []
    if not images:
        raise ImageUnavailable(f"image {image_id} does not exist or is not shared with this account: "
                               f"check the catalog's images")
    image = images[0]
    if image.get("RootDeviceType", "ebs") != "ebs":
        raise ImageUnavailable(f"image {image_id} is not EBS-backed: its root volume cannot be sized or encrypted")
    return image["RootDeviceName"]


def run_instances_params(request: DesktopRequest, bundle: Bundle, os_family: str, region: str, user_data: str,
                         generation: int, *, ec2) -> dict[str, Any]:
    """The boto3 ``run_instances`` arguments for the request's desktop in launch ``generation``.

    The encrypted root volume is mapped to the image's own root device (read with ``ec2``), so it replaces the
    image's root instead of adding a disk beside it. Raises ``ImageUnavailable`` for an image EC2 cannot launch.
    """
    image_id = bundle.image_for(os_family, region)
    tags = [
        {"Key": "Name", "Value": instance_name(request.issue_key)},
        {"Key": TAG_ISSUE, "Value": request.issue_key},
        {"Key": TAG_REQUEST, "Value": str(request.request_id)},
        {"Key": TAG_USER, "Value": request.user.login},
    ]
    params: dict[str, Any] = {
        "ImageId": image_id,
        "InstanceType": bundle.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "ClientToken": client_token(request, generation),
        "UserData": user_data,
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 1},
        "BlockDeviceMappings": [{
            "DeviceName": image_root_device(ec2, image_id),
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


def request_instances(ec2, request_id: str) -> list[dict[str, Any]]:
    """Every live instance tagged with this request, oldest first."""
    pages = ec2.get_paginator("describe_instances").paginate(Filters=[
        {"Name": f"tag:{TAG_REQUEST}", "Values": [str(request_id)]},
        {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
    ])
    return sorted((i for page in pages for r in page["Reservations"] for i in r["Instances"]),
                  key=lambda i: i["LaunchTime"])


def find_request_instance(ec2, request_id: str) -> dict[str, Any] | None:
    """The live instance tagged with this request, if any (the oldest, should there be several)."""
    instances = request_instances(ec2, request_id)
    return instances[0] if instances else None


def launch_once(ec2, params: dict[str, Any], request_id) -> tuple[str, bool]:
    """The request's instance id, launching it only when no live instance is tagged with ``request_id``;
    (id, launched now). Raises ``CapacityUnavailable`` when EC2 has no capacity for the instance type; the
    ``ClientToken`` is not spent then, so a later try launches under the same one."""
    from botocore.exceptions import ClientError

    if existing := find_request_instance(ec2, request_id):
        return existing["InstanceId"], False
    try:
        reservation = ec2.run_instances(**params)
    except ClientError as error:
        if refusal := _capacity_refusal(error, params["InstanceType"]):
            raise refusal from error
        raise
    return reservation["Instances"][0]["InstanceId"], True


def _capacity_refusal(error, subject: str) -> CapacityUnavailable | None:
    """EC2's capacity refusal in ``error`` (a ``ClientError``) as ``CapacityUnavailable``; None for anything else."""
    detail = error.response.get("Error", {})
    if detail.get("Code") not in CAPACITY_ERROR_CODES:
        return None
    return CapacityUnavailable(subject, detail.get("Message", ""))


def instance_state(ec2, instance_id: str) -> str | None:
    """The instance's state (``pending``, ``running``, ``stopping``, ``stopped``, ``shutting-down``,
    ``terminated``), or None when EC2 does not know it: terminated long ago, or never launched in this account
    and region. Right after a launch EC2 may not know it yet either (eventual consistency): ``launch_once`` finds
    such an instance by its tags before it launches another."""
    from botocore.exceptions import ClientError

    try:
        reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "InvalidInstanceID.NotFound":
            return None
        raise
    instances = [i for r in reservations for i in r["Instances"]]
    return instances[0]["State"]["Name"] if instances else None


def ensure_running(ec2, instance_id: str) -> str:
    """Start the instance when it is stopped, without waiting for it; leave it alone when pending or running.

    Returns ``"started"``, or the state it was left in (``"pending"``, ``"running"``). Raises
    ``InstanceStateError``: with ``retry_later`` while it is stopping; without it when it is shutting down,
    terminated or unknown to EC2, which needs a new launch generation. Raises ``CapacityUnavailable`` when EC2 has
    no capacity to start it (it stays stopped).
    """
    from botocore.exceptions import ClientError
    state = instance_state(ec2, instance_id)
    if state in ("pending", "running"):
        return state
    if state == "stopping":
        raise InstanceStateError(f"instance {instance_id} is stopping: retry once it has stopped, then it is "
                                 f"started again", state=state, retry_later=True)
    if state != "stopped":
        raise InstanceStateError(f"instance {instance_id} is {state or 'unknown to EC2'}: it cannot be started, "
                                 f"launch a new one", state=state, retry_later=False)
    try:
        _change_state(ec2.start_instances, instance_id, state)
    except ClientError as error:
        if refusal := _capacity_refusal(error, instance_id):
            raise refusal from error
        raise
    return "started"


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


def bootstrap_outcome(ec2, instance_id: str) -> BootstrapOutcome:
    """What the desktop's bootstrap reported through its instance tags.

    The cause is given only with ``failed``; it is cut to a short single line, since the desktop wrote it.
    """
    tags = ec2.describe_tags(Filters=[
        {"Name": "resource-id", "Values": [instance_id]},
        {"Name": "key", "Values": [BOOTSTRAP_TAG_KEY, BOOTSTRAP_CAUSE_TAG_KEY]},
    ])["Tags"]
    values = {tag["Key"]: tag["Value"] for tag in tags}
    status = values.get(BOOTSTRAP_TAG_KEY)
    cause = values.get(BOOTSTRAP_CAUSE_TAG_KEY) if status == BOOTSTRAP_FAILED else None
    if cause is not None:
        cause = re.sub(r"\s+", " ", re.sub(r"[\x00-\x1f\x7f]", " ", cause)).strip()[:_MAX_CAUSE] or None
    return BootstrapOutcome(status=status, cause=cause)


def dispose_instance(ec2, instance_id: str, action: DisposeAction) -> str:
    """Apply a failed request's ``action`` to its instance so it bills no compute; returns what it did.

    ``terminate`` gives ``"terminated"``; ``stop`` gives ``"stopped"``; ``keep`` gives ``"kept"`` and calls
    nothing. An instance already there gives ``"already terminated"``, ``"already terminating"``,
    ``"already stopped"`` or ``"already stopping"``; one EC2 does not know gives ``"not found"``. Raises
    ``InstanceStateError`` with ``retry_later`` when ``stop`` finds it pending (EC2 stops only a running one).
    """
    if action not in get_args(DisposeAction):
        raise ValueError(f"action must be one of {', '.join(get_args(DisposeAction))}, not {action!r}")
    if action == "keep":
        return "kept"
    state = instance_state(ec2, instance_id)
    if state is None:
        return "not found"
    if state == "terminated":
        return "already terminated"
    if state == "shutting-down":
        return "already terminating"
    if action == "terminate":
        _change_state(ec2.terminate_instances, instance_id, state)
        return "terminated"
    if state in ("stopped", "stopping"):
        return f"already {state}"
    if state == "pending":
        raise InstanceStateError(f"instance {instance_id} is pending: it can be stopped once it runs",
                                 state=state, retry_later=True)
    _change_state(ec2.stop_instances, instance_id, state)
    return "stopped"


def _change_state(call, instance_id: str, state: str) -> None:
    """Start, stop or terminate; EC2's refusal because the state moved meanwhile becomes a retry-later error."""
    from botocore.exceptions import ClientError

    try:
        call(InstanceIds=[instance_id])
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "IncorrectInstanceState":
            raise
        raise InstanceStateError(f"instance {instance_id} changed state (was {state}): retry",
                                 state=state, retry_later=True) from None


def decoded_user_data(ec2, instance_id: str) -> str:
    value = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")["UserData"].get("Value", "")
    return base64.b64decode(value).decode() if value else ""


def root_volume_id(instance: dict[str, Any]) -> str | None:
    """The EBS volume mapped to the instance's root device (``describe_instances`` shape); None without one."""
    root = instance.get("RootDeviceName")
    return next((m["Ebs"]["VolumeId"] for m in instance.get("BlockDeviceMappings") or []
                 if m.get("DeviceName") == root and "Ebs" in m), None)


def snapshot_root_volume(ec2, instance: dict[str, Any], tags: dict[str, str]) -> dict[str, str] | None:
    """The snapshot of the instance's root volume that carries ``tags`` (each tag a filter, so a rerun finds it),
    taken now when there is none: ``{"SnapshotId", "State"}`` (``pending``, ``completed``, ``error``); None when
    the instance has no root volume. Take it of a stopped instance, so the disk is consistent."""
    volume_id = root_volume_id(instance)
    if volume_id is None:
        return None
    filters = [{"Name": "volume-id", "Values": [volume_id]}]
    filters += [{"Name": f"tag:{key}", "Values": [value]} for key, value in tags.items()]
    found = ec2.describe_snapshots(OwnerIds=["self"], Filters=filters)["Snapshots"]
    if found:
        latest = max(found, key=lambda snapshot: snapshot["StartTime"])
        return {"SnapshotId": latest["SnapshotId"], "State": latest["State"]}
    created = ec2.create_snapshot(
        VolumeId=volume_id, Description=f"Root volume of {instance['InstanceId']}, kept when its desktop was removed",
        TagSpecifications=[{"ResourceType": "snapshot",
                            "Tags": [{"Key": key, "Value": value} for key, value in tags.items()]}])
    return {"SnapshotId": created["SnapshotId"], "State": created["State"]}

"""What IAM would decide for the AWS calls a test made: the calls recorded from boto3 clients, turned into the
authorization requests AWS documents for them, judged against an identity policy.

moto 5.2.5 checks an identity policy's actions for every service, its resources only for S3 (every other call is
matched against the resource ``*``) and no condition at all (``moto.iam.access_control``: no context values are
passed, so each condition passes). This judges the rest, for the condition operators our policies use; an
operator it does not know is an error, never a pass.

Authorization requests, per the EC2 and IAM documentation: RunInstances is authorized once per resource it
touches (the image, subnet, security groups, network interface, instance and volume, the last two with the
request's tags and the instance type, metadata and encryption settings), plus ``ec2:CreateTags`` with
``ec2:CreateAction`` for tags set in the call, plus ``iam:PassRole`` for the instance profile's role (named as the
profile); Start/Stop/TerminateInstances once per instance with its tags as ``aws:ResourceTag/*``; CreateSnapshot
for the volume (its tags) and the new snapshot (the request's tags), plus ``ec2:CreateTags`` for those tags.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

ACCOUNT = "123456789012"  # moto's default account, where its IAM users live


@dataclass(frozen=True)
class AuthorizationRequest:
    action: str
    resource: str
    context: dict[str, Any] = field(default_factory=dict)


@dataclass
class RecordedCall:
    service: str
    operation: str
    params: dict[str, Any]
    region: str
    resource_tags: dict[str, dict[str, str]] = field(default_factory=dict)  # resource id -> tags when called
    response: dict[str, Any] | None = None


class CallRecorder:
    """Records every call made through the clients it is attached to (parameters, the tags of the instances or
    volume it acts on at the time of the call, the response)."""

    def __init__(self, resource_tags):
        self.calls: list[RecordedCall] = []
        self._resource_tags = resource_tags

    def attach(self, client) -> None:
        service = client.meta.service_model.endpoint_prefix
        region = client.meta.region_name

        def before(params, model, **_):
            ids = [*params.get("InstanceIds", []), *([params["VolumeId"]] if "VolumeId" in params else [])]
            tags = {i: dict(self._resource_tags(i)) for i in ids}
            self.calls.append(RecordedCall(service, model.name, copy.deepcopy(params), region, tags))

        def after(parsed, model, **_):
            if self.calls and self.calls[-1].operation == model.name and self.calls[-1].response is None:
                self.calls[-1].response = parsed

        client.meta.events.register("before-parameter-build", before)
        client.meta.events.register("after-call", after)

    def operations(self) -> set[str]:
        return {f"{call.service}:{call.operation}" for call in self.calls}


def _tag_context(tags: list[dict[str, str]]) -> dict[str, Any]:
    context: dict[str, Any] = {f"aws:RequestTag/{t['Key']}": t["Value"] for t in tags}
    context["aws:TagKeys"] = [t["Key"] for t in tags]
    return context


def authorization_requests(call: RecordedCall, account: str = ACCOUNT) -> list[AuthorizationRequest]:
    """The authorization requests AWS makes for one call."""
    region, params, op = call.region, call.params, call.operation
    ec2 = f"arn:aws:ec2:{region}:{account}"
    if call.service == "ec2" and op == "RunInstances":
        instance = (call.response or {}).get("Instances", [{}])[0]
        subnet = params.get("SubnetId") or instance.get("SubnetId")
        groups = params.get("SecurityGroupIds") or [g["GroupId"] for g in instance.get("SecurityGroups", [])]
        tags = {spec["ResourceType"]: spec["Tags"] for spec in params.get("TagSpecifications", [])}
        ebs = [m["Ebs"] for m in params.get("BlockDeviceMappings", []) if "Ebs" in m]
        requests = [
            AuthorizationRequest("ec2:RunInstances", f"arn:aws:ec2:{region}::image/{params['ImageId']}"),
            AuthorizationRequest("ec2:RunInstances", f"{ec2}:subnet/{subnet}"),
            *[AuthorizationRequest("ec2:RunInstances", f"{ec2}:security-group/{g}") for g in groups],
            AuthorizationRequest("ec2:RunInstances", f"{ec2}:network-interface/*"),
            AuthorizationRequest("ec2:RunInstances", f"{ec2}:instance/*", {
                **_tag_context(tags.get("instance", [])), "ec2:InstanceType": params["InstanceType"],
                "ec2:MetadataHttpTokens": params.get("MetadataOptions", {}).get("HttpTokens", "optional")}),
            AuthorizationRequest("ec2:RunInstances", f"{ec2}:volume/*", {
                **_tag_context(tags.get("volume", [])),
                "ec2:Encrypted": "true" if ebs and all(e.get("Encrypted") for e in ebs) else "false"}),
        ]
        for resource_type, resource_tags in tags.items():
            requests.append(AuthorizationRequest("ec2:CreateTags", f"{ec2}:{resource_type}/*", {
                **_tag_context(resource_tags), "ec2:CreateAction": "RunInstances"}))
        if profile := params.get("IamInstanceProfile", {}).get("Name"):
            requests.append(AuthorizationRequest("iam:PassRole", f"arn:aws:iam::{account}:role/{profile}",
                                                 {"iam:PassedToService": "ec2.amazonaws.com"}))
        return requests
    if call.service == "ec2" and op in ("StartInstances", "StopInstances", "TerminateInstances"):
        return [AuthorizationRequest(f"ec2:{op}", f"{ec2}:instance/{i}",
                                     {f"aws:ResourceTag/{k}": v for k, v in call.resource_tags.get(i, {}).items()})
                for i in params["InstanceIds"]]
    if call.service == "ec2" and op == "CreateSnapshot":
        tags = [t for spec in params.get("TagSpecifications", []) for t in spec["Tags"]]
        volume = params["VolumeId"]
        return [
            AuthorizationRequest("ec2:CreateSnapshot", f"{ec2}:volume/{volume}",
                                 {f"aws:ResourceTag/{k}": v for k, v in call.resource_tags.get(volume, {}).items()}),
            AuthorizationRequest("ec2:CreateSnapshot", f"arn:aws:ec2:{region}::snapshot/*", _tag_context(tags)),
            *([AuthorizationRequest("ec2:CreateTags", f"arn:aws:ec2:{region}::snapshot/*",
                                    {**_tag_context(tags), "ec2:CreateAction": "CreateSnapshot"})] if tags else []),
        ]
    if call.service == "ec2" and op == "CreateTags":
        return [AuthorizationRequest("ec2:CreateTags", f"{ec2}:instance/{r}", _tag_context(params["Tags"]))
                for r in params["Resources"]]
    if call.service == "ec2" and op.startswith("Describe"):
        return [AuthorizationRequest(f"ec2:{op}", "*")]
    if call.service == "s3" and op in ("PutObject", "HeadObject", "GetObject"):
        action = "s3:PutObject" if op == "PutObject" else "s3:GetObject"
        return [AuthorizationRequest(action, f"arn:aws:s3:::{params['Bucket']}/{params['Key']}")]
    if call.service == "secretsmanager" and op == "GetSecretValue":
        return [AuthorizationRequest("secretsmanager:GetSecretValue",
                                     f"arn:aws:secretsmanager:{region}:{account}:secret:{params['SecretId']}-AbCdEf")]
    raise NotImplementedError(f"no authorization model for {call.service}:{op}: add one before relying on it")


def is_allowed(policy: dict, request: AuthorizationRequest) -> bool:
    """An identity policy's verdict: some Allow statement matches and no Deny statement does."""
    statements = policy["Statement"] if isinstance(policy["Statement"], list) else [policy["Statement"]]
    matching = [s for s in statements if _matches(s, request)]
    return any(s["Effect"] == "Allow" for s in matching) and not any(s["Effect"] == "Deny" for s in matching)


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def _wildcard(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def _substitute(text: str, context: dict[str, Any]) -> str:
    """Policy variables (``${key}``) from the request's context."""
    return re.sub(r"\$\{([^}]+)\}", lambda m: str(context.get(m.group(1), "\x00undefined")), text)


def _matches(statement: dict, request: AuthorizationRequest) -> bool:
    if not any(_wildcard(a, request.action, ignore_case=True) for a in _listed(statement["Action"])):
        return False
    if not any(_wildcard(_substitute(r, request.context), request.resource) for r in _listed(statement["Resource"])):
        return False
    return all(_condition(operator, key, _listed(expected), request.context)
               for operator, block in statement.get("Condition", {}).items() for key, expected in block.items())


def _condition(operator: str, key: str, expected: list, context: dict[str, Any]) -> bool:
    values = {k.lower(): v for k, v in context.items()}
    present = key.lower() in values
    actual = values.get(key.lower())
    expected = [_substitute(str(e), context) for e in expected]
    if operator == "Null":
        return (not present) == (expected[0] == "true")
    if operator == "ForAllValues:StringEquals":
        return all(v in expected for v in _listed(actual)) if present else True
    if not present:
        return False
    if isinstance(actual, list):
        raise ValueError(f"{key} is multivalued: {operator} needs a set operator")
    if operator == "StringEquals":
        return actual in expected
    if operator == "StringLike":
        return any(_wildcard(e, actual) for e in expected)
    if operator == "Bool":
        return str(actual).lower() == expected[0].lower()
    raise NotImplementedError(f"condition operator {operator} is not modelled")

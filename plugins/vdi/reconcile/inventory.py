"""What the other systems hold, read in pages: EC2 instances carrying our tags (tag-filtered, paginated), the
broker's pools VDI Studios created (one listing), tickets by JQL (enhanced search pages)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from vdi.ec2 import LIVE_STATES, TAG_ISSUE, TAG_REQUEST
from vdi.request import ISSUE_KEY_PATTERN

EC2_PAGE = 1000  # describe_instances' largest page
_POOL_NAME = re.compile(r"vdi-(" + ISSUE_KEY_PATTERN.strip("^$") + r")")


def tagged_instances(ec2) -> list[dict[str, Any]]:
    """The live instances tagged with a request (``vdi:request``): ``instance_id``, ``state``, ``request_id``,
    ``issue_key``, ``launch_time``; one filtered call per page of 1000."""
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "tag-key", "Values": [TAG_REQUEST]},
                 {"Name": "instance-state-name", "Values": list(LIVE_STATES)}],
        PaginationConfig={"PageSize": EC2_PAGE})
    found = []
    for page in pages:
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
                found.append({"instance_id": instance["InstanceId"], "state": instance["State"]["Name"],
                              "request_id": tags.get(TAG_REQUEST, ""), "issue_key": tags.get(TAG_ISSUE, ""),
                              "launch_time": instance.get("LaunchTime")})
    return found


def product_pools(broker) -> list[dict[str, Any]]:
    """The broker's pools named as VDI Studios names a desktop's pool (``vdi-<issue key>``): ``pool_id``,
    ``issue_key``; one listing (the broker's list calls return everything, unpaged)."""
    found = []
    for pool in broker.pools():
        if match := _POOL_NAME.fullmatch(str(pool.get("name", ""))):
            found.append({"pool_id": int(pool["id"]), "issue_key": match.group(1)})
    return found


def jira_time(value: str) -> datetime:
    """Jira's timestamp (``2026-11-30T19:00:00.000+0000``) as an aware datetime."""
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")


def quoted(names) -> str:
    """Names as a JQL list: ``("Approved", "Removal Requested")``."""
    return "(" + ", ".join('"' + str(n).replace("\\", "\\\\").replace('"', '\\"') + '"' for n in names) + ")"

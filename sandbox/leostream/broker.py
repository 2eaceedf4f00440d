"""The Leostream sandbox's state: API sessions, centers, the desktops an AWS center scan found, the desktops whose
Leostream agent has registered, pools, policies, pool assignments, users and gateways, with the broker's
conventions (0/1 booleans, masked secrets, ``YYYY-MM-DD HH:MM:SS``).

Desktop ``status`` integers are not documented by Leostream; the sandbox uses 22 for a running desktop (the value in
the vendor's own examples), 23 stopped, 24 pending or stopping. ``hda_status`` (the agent's state) is ``""`` until
the desktop's agent has registered (as in the vendor's examples of desktops without one), then ``Running`` while
the instance runs, else ``Stopped``; a pool's ``total_agent_running`` counts its ``Running`` ones.
"""

from __future__ import annotations

import copy
import hmac
import itertools
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import boto3

log = logging.getLogger(__name__)

MASK = "**********"
STATUS_RUNNING, STATUS_STOPPED, STATUS_PENDING = 22, 23, 24
CENTER_ONLINE, CENTER_OFFLINE, CENTER_SCANNING = (1, "Online"), (2, "Offline"), (5, "Scanning")
CONDITIONS = ("eq", "ne", "gt", "lt", "ct", "nc", "bw", "ew", "ip", "np")
AWS_SIZES = ["c5.xlarge", "g4dn.xlarge", "g4dn.2xlarge", "g5.xlarge", "m5.large", "m5.xlarge", "t3.large",
             "t3.medium"]


class BrokerError(Exception):
    """An error answered with Leostream's body ``{"error_status", "error_message", ...}`` (404: no body)."""

    def __init__(self, status: int, error_status: str | None = None, message: str = "", **extra: Any):
        super().__init__(status, error_status, message)
        self.status = status
        self.error_status = error_status
        self.message = message
        self.extra = extra

    def body(self) -> dict | None:
        if self.error_status is None:
            return None
        return {"error_status": self.error_status, "error_message": self.message, **self.extra}


def not_found() -> BrokerError:
    return BrokerError(404)


def stamp(moment: float | None = None) -> str:
    return datetime.fromtimestamp(moment if moment is not None else time.time(), timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S")


def as_flag(value: Any) -> Any:
    """Leostream booleans are 0/1; true/false are accepted on input."""
    return int(value) if isinstance(value, bool) else value


def normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return as_flag(value)


def missing(body: dict, names: list[str]) -> list[str]:
    return [name for name in names if body.get(name) in (None, "")]


def bad_data(message: str, missing_fields: list[str] | None = None, errors: list[dict] | None = None) -> BrokerError:
    extra: dict[str, Any] = {}
    if missing_fields:
        extra["missing_fields"] = missing_fields
    if errors:
        extra["errors"] = errors
    return BrokerError(400, "BAD_DATA", message, **extra)


def split_known(body: dict, known: set[str]) -> tuple[dict, list[str]]:
    """(accepted fields, names of the unknown ones: not saved and echoed in ``extra_fields``)."""
    accepted = {k: normalise(v) for k, v in body.items() if k in known}
    return accepted, sorted(k for k in body if k not in known)


@dataclass
class Desktop:
    id: int
    center_id: int
    instance_id: str
    name: str
    display_name: str
    windows_name: str
    ip: str
    guest_os: str
    state: str
    tags: dict[str, str]
    agent: bool = False
    user_id: int = 0
    out_of_service: int = 0

    @property
    def status(self) -> int:
        return {"running": STATUS_RUNNING, "stopped": STATUS_STOPPED}.get(self.state, STATUS_PENDING)

    @property
    def hda_status(self) -> str:
        if not self.agent:
            return ""
        return "Running" if self.state == "running" else "Stopped"

    def attribute(self, name: str) -> str:
        if name == "server_id":
            return str(self.center_id)
        if name == "tag_filter":
            return " ".join(f"{k}={v}" for k, v in sorted(self.tags.items()))
        if name == "instance_id":
            return self.instance_id
        return str(getattr(self, name, "") or "")

    def vm_item(self) -> dict:
        return {"id": self.id, "name": self.name, "display_name": self.display_name, "status": self.status,
                "hda_status": self.hda_status, "out_of_service": self.out_of_service, "user_id": self.user_id}


@dataclass
class Session:
    sid: str
    user_login: str
    started: float
    expired: bool = False


def _matches(desktop: Desktop, attribute: dict) -> bool:
    field_name = attribute.get("vm_table_field", "")
    condition = attribute.get("condition_type", "eq")
    wanted = str(attribute.get("text_to_match", "")).lower()
    if field_name == "tag_filter":
        values = [f"{k}={v}".lower() for k, v in desktop.tags.items()]
    else:
        values = [desktop.attribute(field_name).lower()]
    tests = {
        "eq": lambda v: v == wanted, "ne": lambda v: v != wanted, "gt": lambda v: v > wanted,
        "lt": lambda v: v < wanted, "ct": lambda v: wanted in v, "nc": lambda v: wanted not in v,
        "bw": lambda v: v.startswith(wanted), "ew": lambda v: v.endswith(wanted), "ip": lambda v: v != "",
        "np": lambda v: v == "",
    }
    if condition in ("ne", "nc", "np"):
        return all(tests[condition](v) for v in values) if values else condition != "ne"
    return any(tests[condition](v) for v in values)


class Broker:
    """Everything one sandbox broker holds. Public methods take the lock."""

    def __init__(self, api_user: str, api_password: str, aws_endpoint: str | None, session_ttl_s: float,
                 hostname: str = "leostream-sandbox.local"):
        self.lock = threading.RLock()
        self.api_user = api_user
        self.api_password = api_password
        self.aws_endpoint = aws_endpoint
        self.session_ttl_s = session_ttl_s
        self.hostname = hostname
        self.sessions: dict[str, Session] = {}
        self.centers: dict[int, dict] = {}
        self.desktops: dict[int, Desktop] = {}
        self.agents: set[str] = set()  # instance ids whose Leostream agent has registered
        self.gateways: dict[int, dict] = {}
        created = stamp()
        self.pools: dict[int, dict] = {1: {
            "id": 1, "name": "All Desktops", "display_name": "", "notes": "", "read_only": 1, "is_root": 1,
            "pool_type": "D", "running_desktops_threshold": 0, "created": created, "updated": created,
            "pool_definition": {"restrict_by": "A", "attributes": [], "pool_attribute_join": "A",
                                "parent_pool_id": 0, "never_rogue": 0},
            "provision": {"provision_on_off": 0}, "domain": {"domain_join": 0},
            "log": {"log_information_threshold": 0, "log_warning_threshold": 0, "log_error_threshold": 0},
        }}
        self.policies: dict[int, dict] = {1: self.policy_defaults({"name": "Default", "is_default": 1}, 1)}
        self.assignments: dict[int, dict] = {}
        self.users: dict[int, dict] = {}
        self.roles = {"User", "Administrator"}
        self._ids = {name: itertools.count(start) for name, start in
                     (("center", 1), ("desktop", 1000), ("pool", 2), ("policy", 2), ("assignment", 1),
                      ("user", 2), ("gateway", 1), ("job", 1000))}
        self._aws = boto3.session.Session()
        self._aws_lock = threading.Lock()

    def next_id(self, kind: str) -> int:
        return next(self._ids[kind])

    # --- sessions ----------------------------------------------------------------------------------
    def user_named(self, user_login: str) -> dict | None:
        """The user with this login; logins are case-insensitive, as the broker's POST /users treats them."""
        return next((u for u in self.users.values() if u["user_login"].lower() == user_login.lower()), None)

    def login(self, user_login: str, password: str) -> str:
        with self.lock:
            if user_login == self.api_user and hmac.compare_digest(password, self.api_password):
                sid = secrets.token_hex(16)
                self.sessions[sid] = Session(sid, user_login, time.monotonic())
                return sid
            user = self.user_named(user_login)
            if user and user.get("is_local") and user.get("_password") == password:
                raise BrokerError(403, "INSUFFICIENT_PERMISSIONS", "Access to API is not enabled in this user's "
                                  "role or the role has not enough permissions")
            raise BrokerError(401, "INVALID_CREDENTIALS", "Invalid user name or password")

    def session(self, sid: str | None) -> Session:
        with self.lock:
            session = self.sessions.get(sid or "")
            if session is None:
                raise BrokerError(401, "UNAUTHORIZED", "No correct Authorization header provided")
            if session.expired or time.monotonic() - session.started > self.session_ttl_s:
                self.sessions.pop(session.sid, None)
                raise BrokerError(401, "UNAUTHORIZED", "Session expired, please log in again")
            return session

    def logout(self, sid: str) -> None:
        with self.lock:
            self.sessions.pop(sid, None)

    def expire_session(self, sid: str | None) -> bool:
        """Expire one session now, as the end of its lifetime would; False when there is no such session."""
        with self.lock:
            session = self.sessions.get(sid or "")
            if session is not None:
                session.expired = True
            return session is not None

    def expire_sessions(self) -> int:
        with self.lock:
            for session in self.sessions.values():
                session.expired = True
            return len(self.sessions)

    # --- pools -------------------------------------------------------------------------------------
    def pool_members(self, pool_id: int, seen: frozenset[int] = frozenset()) -> list[Desktop]:
        pool = self.pools[pool_id]
        if pool.get("is_root"):
            return sorted(self.desktops.values(), key=lambda d: d.id)
        definition = pool["pool_definition"]
        parent_id = definition.get("parent_pool_id") or 1
        parent = (self.pool_members(parent_id, seen | {pool_id}) if parent_id in self.pools and
                  parent_id not in seen else [])
        restrict_by = definition.get("restrict_by")
        if restrict_by == "C":
            server_ids = {int(s) for s in definition.get("server_ids") or []}
            return [d for d in parent if d.center_id in server_ids]
        if restrict_by == "H":
            chosen = {int(v["id"]) for v in definition.get("adhoc_vms") or []}
            return [d for d in parent if d.id in chosen]
        if restrict_by == "A":
            attributes = definition.get("attributes") or []
            join_all = definition.get("pool_attribute_join", "A") != "O"
            combine = all if join_all else any
            return [d for d in parent if attributes and combine(_matches(d, a) for a in attributes)]
        return []

    def pool_counters(self, pool_id: int) -> dict:
        members = self.pool_members(pool_id)
        assigned = sum(1 for d in members if d.user_id)
        unavailable = sum(1 for d in members if not d.user_id and d.out_of_service)
        return {
            "total_vm": len(members),
            "total_vm_running": sum(1 for d in members if d.state == "running"),
            "total_vm_stopped": sum(1 for d in members if d.state == "stopped"),
            "total_vm_suspended": 0,
            "total_agent_running": sum(1 for d in members if d.hda_status == "Running"),
            "total_logged_in": assigned,
            "total_connected": 0,
            "assigned_vm": assigned,
            "available_vm": len(members) - assigned - unavailable,
            "unavailable_vm": unavailable,
        }

    def pool_item(self, pool: dict) -> dict:
        return {"id": pool["id"], "name": pool["name"],
                "parent_pool_id": pool["pool_definition"].get("parent_pool_id", 0), **self.pool_counters(pool["id"])}

    def pool_full(self, pool: dict) -> dict:
        body = copy.deepcopy(pool)
        body["pool_stats"] = {"counts_updated": stamp(), **self.pool_counters(pool["id"])}
        body["vms_list"] = [d.vm_item() for d in self.pool_members(pool["id"])]
        return body

    def pool_tree(self, root_id: int, level: int = 0) -> dict:
        pool = self.pools[root_id]
        children = [p for p in self.pools.values() if not p.get("is_root")
                    and p["pool_definition"].get("parent_pool_id", 1) == root_id and p["id"] != root_id]
        return {"id": root_id, "level": level, "name": pool["name"],
                "parent_pool_id": pool["pool_definition"].get("parent_pool_id", 0),
                "children": [self.pool_tree(c["id"], level + 1) for c in sorted(children, key=lambda p: p["id"])]}

    # --- policies ------------------------------------------------------------------------------------
    @staticmethod
    def policy_defaults(accepted: dict, policy_id: int) -> dict:
        created = stamp()
        policy = {
            "id": policy_id, "name": "", "notes": "", "is_default": 0, "max_desktops": -1,
            "single_desktop_only": 0, "offer_empty_pools": 0, "alt_credentials": 0, "attribute_join": "A",
            "session_expire_delay": 2880, "session_expire_on_lock": 0, "ha_power_on": 1, "ha_start_if_stopped": 1,
            "ha_offer_running_without_hda": 1, "ha_login_as": "R", "ha_display_mode": "0",
            "ha_plan_protocol_id": 1, "ha_plan_power_control_id": 1, "ha_plan_script_id": 0,
            "ha_auto_login": 0, "ha_auto_login_password": "", "usb_enabled": 0, "usb_mode": "C",
            "created": created, "updated": created, "attributes": [], "usb": [], "vmware_view_servers": [],
        }
        policy.update(accepted)
        return policy

    def policy_full(self, policy: dict) -> dict:
        body = copy.deepcopy(policy)
        for secret_field in ("ha_auto_login_password", "sa_auto_login_password"):
            if body.get(secret_field):
                body[secret_field] = MASK
        body["pool_assignments"] = [self.assignment_item(a) for a in self.assignments.values()
                                    if a["policy_id"] == policy["id"]]
        return body

    def assignment_item(self, assignment: dict) -> dict:
        return {"id": assignment["id"], "pool_id": assignment["pool_id"],
                "pool_name": self.pools[assignment["pool_id"]]["name"]}

    def assignment_full(self, assignment: dict) -> dict:
        body = copy.deepcopy(assignment)
        pool = self.pools[assignment["pool_id"]]
        body["pool_data"] = {"id": pool["id"], "name": pool["name"], "display_name": pool.get("display_name", ""),
                             "is_root": pool.get("is_root", 0), "pool_type": "D", "read_only": pool["read_only"],
                             "created": pool["created"], "updated": pool["updated"]}
        for plan in ("plan_protocol", "plan_power_control", "plan_release"):
            body[f"{plan}_data"] = {"id": body.get(f"{plan}_id", 1), "name": "Default"}
        body["plan_script_data"] = {"id": body.get("plan_script_id", 0), "name": ""}
        if body.get("auto_login_password"):
            body["auto_login_password"] = MASK
        return body

    # --- centers and the AWS scan -------------------------------------------------------------------
    def center_item(self, center: dict) -> dict:
        definition = center["center_definition"]
        return {"id": center["id"], "name": definition["name"], "flavor": "Z", "online": center["online"],
                "os": "Amazon Web Services", "status": center["status"], "status_label": center["status_label"],
                "type": "amazon", "type_label": "Amazon Web Services"}

    def center_full(self, center: dict, short: bool = False) -> dict:
        body = copy.deepcopy(center)
        definition = body["center_definition"]
        for secret_field in ("vc_password", "pcoip_ssh_password"):
            definition[secret_field] = MASK
        if short:
            body.pop("center_info", None)
            body.pop("images", None)
        return body

    def ec2(self, center: dict):
        """A boto3 EC2 client reading what ``center`` reads. Clients are thread-safe, a session is not: clients
        come from the broker's one session (which caches the service model), one at a time."""
        from botocore.config import Config

        definition = center["center_definition"]
        options: dict[str, Any] = {"region_name": definition.get("vc_datacenter") or "us-east-1",
                                   "config": Config(connect_timeout=3, read_timeout=20,
                                                    retries={"max_attempts": 2, "mode": "standard"})}
        if self.aws_endpoint:
            options["endpoint_url"] = self.aws_endpoint
        if definition.get("vc_auth_method") == "access_key":
            options["aws_access_key_id"] = definition.get("vc_name")
            options["aws_secret_access_key"] = center["_secret"]
        with self._aws_lock:
            return self._aws.client("ec2", **options)

    def refresh_center_info(self, center: dict) -> None:
        """Read subnets and security groups from AWS, as a broker does when a center is saved."""
        try:
            ec2 = self.ec2(center)
            subnets = ec2.describe_subnets()["Subnets"]
            groups = ec2.describe_security_groups()["SecurityGroups"]
        except Exception as error:  # AWS unreachable or refusing: the center shows offline
            log.warning("center %s: AWS not reachable (%s)", center["id"], type(error).__name__)
            center["online"], (center["status"], center["status_label"]) = 0, CENTER_OFFLINE
            return
        center["center_info"]["aws_sub_nets"] = [
            f"{s['SubnetId']}/{s['VpcId']}/{s['AvailabilityZone']}/"
            + next((t["Value"] for t in s.get("Tags", []) if t["Key"] == "Name"), "") for s in subnets]
        center["center_info"]["aws_sec_groups"] = [
            {"gId": g["GroupId"], "gName": g["GroupName"], "gDesc": g.get("Description", ""),
             "vpcId": g.get("VpcId", "")} for g in groups]
        center["online"], (center["status"], center["status_label"]) = 1, CENTER_ONLINE

    def start_scan(self, center_id: int) -> int:
        with self.lock:
            center = self.centers.get(center_id)
            if center is None:
                raise not_found()
            if center["status"] == CENTER_SCANNING[0]:
                raise BrokerError(409, "CONFLICT", "A scan of this center is already running")
            job_id = self.next_id("job")
            center["status"], center["status_label"] = CENTER_SCANNING
            center["_job_id"] = job_id
        thread = threading.Thread(target=self.scan, args=(center_id,), name=f"leostream-scan-{center_id}",
                                  daemon=True)
        thread.start()
        return job_id

    def scan(self, center_id: int) -> None:
        """Read the center's EC2 instances and update the desktops (pools re-evaluate their filters on read)."""
        with self.lock:
            center = self.centers.get(center_id)
            if center is None:
                return
            center["status"], center["status_label"] = CENTER_SCANNING
            snapshot = copy.deepcopy(center)
        try:
            ec2 = self.ec2(snapshot)
            instances = [instance for page in ec2.get_paginator("describe_instances").paginate()
                         for reservation in page["Reservations"] for instance in reservation["Instances"]]
        except Exception as error:
            log.warning("center %s scan failed: %s", center_id, type(error).__name__)
            with self.lock:
                if center_id in self.centers:
                    center["online"], (center["status"], center["status_label"]) = 0, CENTER_OFFLINE
            return
        with self.lock:
            if center_id not in self.centers:
                return
            self._apply_scan(center_id, instances)
            center["online"], (center["status"], center["status_label"]) = 1, CENTER_ONLINE
            center["updated"] = stamp()
            center["_last_scan"] = time.monotonic()

    def _apply_scan(self, center_id: int, instances: list[dict]) -> None:
        by_instance = {d.instance_id: d for d in self.desktops.values() if d.center_id == center_id}
        seen = set()
        for instance in instances:
            state = instance["State"]["Name"]
            if state in ("terminated", "shutting-down"):
                continue
            instance_id = instance["InstanceId"]
            seen.add(instance_id)
            tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
            name = tags.get("Name") or instance_id
            desktop = by_instance.get(instance_id)
            values = {"name": name, "display_name": name,
                      "windows_name": (instance.get("PrivateDnsName") or "").split(".")[0],
                      "ip": instance.get("PrivateIpAddress", ""),
                      "guest_os": instance.get("PlatformDetails") or instance.get("Platform") or "Linux/UNIX",
                      "state": state, "tags": tags}
            values["agent"] = instance_id in self.agents
            if desktop is None:
                desktop = Desktop(self.next_id("desktop"), center_id, instance_id, **values)
                self.desktops[desktop.id] = desktop
            else:
                for key, value in values.items():
                    setattr(desktop, key, value)
        for instance_id, desktop in by_instance.items():
            if instance_id not in seen:
                del self.desktops[desktop.id]

    def due_polls(self, scale: float) -> list[int]:
        with self.lock:
            due = []
            for center in self.centers.values():
                interval = center["center_definition"].get("poll_interval") or 0
                if interval <= 0 or center["status"] == CENTER_SCANNING[0]:
                    continue
                if time.monotonic() - center.get("_last_scan", 0) >= interval * 60 * scale:
                    due.append(center["id"])
            return due

    # --- the Leostream agent on a desktop ------------------------------------------------------------
    def report_agent(self, instance_id: str) -> None:
        """The desktop's agent registered with the broker: its desktop shows the agent running (and the machine
        running, which a registering agent proves) from now on, also when a later scan first finds it."""
        with self.lock:
            self.agents.add(instance_id)
            for desktop in self.desktops.values():
                if desktop.instance_id == instance_id:
                    desktop.agent, desktop.state = True, "running"

    # --- test hook: a user signs in through a Leostream client ---------------------------------------
    def sign_in(self, user_login: str) -> dict:
        with self.lock:
            user = self.user_named(user_login)
            if user is None:
                raise BrokerError(404, "NOT_FOUND", f"User \"{user_login}\" does not exist")
            policy = next((p for p in self.policies.values() if p["name"] == user["policy_name"]), None)
            assignments = [a for a in self.assignments.values() if policy and a["policy_id"] == policy["id"]]
            for assignment in assignments:
                members = self.pool_members(assignment["pool_id"])
                mine = next((d for d in members if d.user_id == user["id"]), None)
                if mine is not None:
                    return {"user_id": user["id"], "desktop": mine.vm_item(), "pool_id": assignment["pool_id"]}
                offer = next((d for d in members if not d.user_id and not d.out_of_service and
                              (d.state == "running" or assignment.get("start_if_stopped"))), None)
                if offer is not None:
                    offer.user_id = user["id"]
                    return {"user_id": user["id"], "desktop": offer.vm_item(), "pool_id": assignment["pool_id"]}
            raise BrokerError(409, "CONFLICT", f"No desktop is available to \"{user_login}\"")

    def release(self, user_login: str) -> int:
        with self.lock:
            user = self.user_named(user_login)
            if user is None:
                raise BrokerError(404, "NOT_FOUND", f"User \"{user_login}\" does not exist")
            released = [d for d in self.desktops.values() if d.user_id == user["id"]]
            for desktop in released:
                desktop.user_id = 0
            return len(released)


@dataclass
class Poller:
    """Scans centers whose ``poll_interval`` (minutes, times ``scale``) has passed, as the broker's poller does."""

    broker: Broker
    scale: float
    stopped: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, name="leostream-poller", daemon=True).start()

    def _run(self) -> None:
        while not self.stopped.wait(1.0):
            for center_id in self.broker.due_polls(self.scale):
                try:
                    self.broker.start_scan(center_id)
                except BrokerError:
                    pass

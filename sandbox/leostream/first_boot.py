"""The first-boot stand-in: moto runs no user data, so the Leostream sandbox plays each desktop's first boot.

A background thread reads EC2 where the broker's AWS centers read it, every ``poll_s`` seconds, for instances in
``pending`` or ``running`` tagged ``vdi:issue`` and not yet tagged ``vdi:bootstrap`` (the ones the product launched
and no first boot has touched). One ``describe_instances`` per center region and tick, filtered by tag on the EC2
side: no busy loop, nothing at all while the broker has no center. For each new instance it takes the outcome
posted for its ticket (consumed: the ticket's next instance gets the default again), else ``done``:

- ``done``: tags ``vdi:bootstrap=running`` at once; after ``delay_s`` the desktop's agent registers with the broker
  (its desktop reports ``hda_status`` ``Running`` and counts in its pools' ``total_agent_running``), then
  ``vdi:bootstrap=done``, the order the real bootstrap follows;
- ``failed``: ``running`` at once; after ``delay_s`` ``vdi:bootstrap=failed`` and ``vdi:bootstrap-cause`` (the
  posted cause, or ``DEFAULT_CAUSE``); no agent;
- ``never``: nothing at all, as when the user data never ran.

Tags are written through the EC2 API with the center's credentials, as the desktop writes them with its role.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
import time
from dataclasses import dataclass, field

from sandbox.leostream.broker import Broker, stamp
from vdi.ec2 import (BOOTSTRAP_CAUSE_TAG_KEY, BOOTSTRAP_DONE, BOOTSTRAP_FAILED, BOOTSTRAP_RUNNING, BOOTSTRAP_TAG_KEY,
                     TAG_ISSUE)
from vdi.request import ISSUE_KEY_PATTERN

log = logging.getLogger(__name__)

OUTCOMES = ("done", "failed", "never")
DEFAULT_OUTCOME = "done"
DEFAULT_CAUSE = "the Leostream agent installation failed"
MAX_CAUSE_LENGTH = 256  # what an EC2 tag value holds
MAX_ATTEMPTS = 5  # tag writes tried per step before the stand-in gives that instance up


class OutcomeError(ValueError):
    """A posted outcome that is not one; the message says what is wrong."""


def parse_outcome(body: dict) -> tuple[str, str, str | None]:
    """``(issue_key, outcome, cause)`` from a ``POST /_sandbox/first-boot`` body (a JSON object)."""
    unknown = sorted(set(body) - {"issue_key", "outcome", "cause"})
    if unknown:
        raise OutcomeError(f"unknown fields: {', '.join(unknown)} (known: issue_key, outcome, cause)")
    issue_key, outcome, cause = body.get("issue_key"), body.get("outcome"), body.get("cause")
    if not isinstance(issue_key, str) or not re.match(ISSUE_KEY_PATTERN, issue_key):
        raise OutcomeError("issue_key must be a Jira issue key such as VDI-12")
    if outcome not in OUTCOMES:
        raise OutcomeError(f"outcome must be one of {', '.join(OUTCOMES)}")
    if cause is not None:
        if outcome != "failed":
            raise OutcomeError("cause goes only with the outcome failed")
        if not isinstance(cause, str) or not cause.strip() or len(cause) > MAX_CAUSE_LENGTH:
            raise OutcomeError(f"cause must be a non-empty text of at most {MAX_CAUSE_LENGTH} characters")
    return issue_key, outcome, cause


@dataclass
class Boot:
    """One instance's first boot, from the moment the stand-in saw it."""

    instance_id: str
    issue_key: str
    outcome: str
    cause: str | None
    seen: str
    played: str | None = None  # when done/failed was written; never set for "never" or a boot given up
    gave_up: str | None = None  # why the tags could not be written
    _client: object = field(default=None, repr=False)
    _due: float = 0.0
    _started: bool = False
    _attempts: int = 0

    def public(self) -> dict:
        shown = {"instance_id": self.instance_id, "issue_key": self.issue_key, "outcome": self.outcome,
                 "cause": self.cause, "seen": self.seen, "played": self.played, "gave_up": self.gave_up}
        return {key: value for key, value in shown.items() if value is not None}


class FirstBoot:
    """The stand-in's pending outcomes, the boots it plays, and the thread that finds and plays them."""

    def __init__(self, broker: Broker, delay_s: float, poll_s: float):
        self.broker = broker
        self.delay_s = delay_s
        self.poll_s = poll_s
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[str, str | None]] = {}
        self._boots: dict[str, Boot] = {}
        self._clients: dict[tuple, object] = {}

    # --- the admin API ---------------------------------------------------------------------------
    def expect(self, issue_key: str, outcome: str, cause: str | None = None) -> None:
        """The outcome of ``issue_key``'s next instance (replacing one posted before for it)."""
        with self._lock:
            self._pending[issue_key] = (outcome, cause)

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    def listing(self) -> dict:
        with self._lock:
            pending = [dict({"issue_key": key, "outcome": outcome}, **({"cause": cause} if cause else {}))
                       for key, (outcome, cause) in self._pending.items()]
            boots = [boot.public() for boot in self._boots.values()]
        return {"default": DEFAULT_OUTCOME, "delay_s": self.delay_s, "pending": pending, "instances": boots}

    # --- the thread ------------------------------------------------------------------------------
    def start(self) -> None:
        threading.Thread(target=self._run, name="leostream-first-boot", daemon=True).start()

    def _run(self) -> None:
        while not self.stopped.wait(self.poll_s):
            try:
                self.tick()
            except Exception:  # the stand-in keeps going: one bad tick must not end every later first boot
                log.exception("first-boot stand-in: a tick failed")

    def tick(self) -> None:
        """Find new instances, then play what is due."""
        for client in self._ec2_clients():
            self._find(client)
        now = time.monotonic()
        with self._lock:
            due = [b for b in self._boots.values() if b.played is None and b.gave_up is None
                   and b.outcome != "never" and (not b._started or b._due <= now)]
        for boot in due:
            self._play(boot)

    def _ec2_clients(self) -> list:
        """One EC2 client per distinct region and credentials among the broker's AWS centers."""
        with self.broker.lock:
            centers = [copy.deepcopy(c) for c in self.broker.centers.values()]
        clients = []
        for center in centers:
            definition = center["center_definition"]
            key = (definition.get("vc_datacenter"), definition.get("vc_auth_method"), definition.get("vc_name"),
                   center.get("_secret"))
            if key not in self._clients:
                self._clients[key] = self.broker.ec2(center)
            if self._clients[key] not in clients:
                clients.append(self._clients[key])
        return clients

    def _find(self, ec2) -> None:
        try:
            pages = ec2.get_paginator("describe_instances").paginate(Filters=[
                {"Name": "tag-key", "Values": [TAG_ISSUE]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]}])
            instances = [i for page in pages for r in page["Reservations"] for i in r["Instances"]]
        except Exception as error:  # EC2 unreachable for now: the next tick tries again
            log.warning("first-boot stand-in: cannot read EC2 (%s)", type(error).__name__)
            return
        with self._lock:
            for instance in instances:
                tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
                if instance["InstanceId"] in self._boots or BOOTSTRAP_TAG_KEY in tags:
                    continue
                issue_key = tags[TAG_ISSUE]
                outcome, cause = self._pending.pop(issue_key, (DEFAULT_OUTCOME, None))
                self._boots[instance["InstanceId"]] = Boot(
                    instance["InstanceId"], issue_key, outcome,
                    (cause or DEFAULT_CAUSE) if outcome == "failed" else None, stamp(), _client=ec2)

    def _play(self, boot: Boot) -> None:
        """The boot's next step: ``running``, or (once due) its outcome."""
        try:
            if not boot._started:
                self._tag(boot, {BOOTSTRAP_TAG_KEY: BOOTSTRAP_RUNNING})
                with self._lock:
                    boot._started, boot._due, boot._attempts = True, time.monotonic() + self.delay_s, 0
                return
            if boot.outcome == "done":
                self.broker.report_agent(boot.instance_id)
                self._tag(boot, {BOOTSTRAP_TAG_KEY: BOOTSTRAP_DONE})
            else:
                self._tag(boot, {BOOTSTRAP_TAG_KEY: BOOTSTRAP_FAILED, BOOTSTRAP_CAUSE_TAG_KEY: boot.cause})
            with self._lock:
                boot.played = stamp()
        except Exception as error:  # moto busy or the instance gone: try again on the next ticks, then give up
            with self._lock:
                boot._attempts += 1
                if boot._attempts >= MAX_ATTEMPTS:
                    boot.gave_up = f"{type(error).__name__} writing its tags"
                    log.warning("first-boot stand-in: gave %s up (%s)", boot.instance_id, boot.gave_up)

    @staticmethod
    def _tag(boot: Boot, tags: dict[str, str]) -> None:
        boot._client.create_tags(Resources=[boot.instance_id],
                                 Tags=[{"Key": key, "Value": value} for key, value in tags.items()])

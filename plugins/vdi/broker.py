"""Registering a desktop with the Leostream broker for its user; every step looks up before it creates.

The v1 API has no call that assigns a desktop to a user, nor one that reads or updates a user. So each user
gets a policy of their own (``vdi.identity.policy_name_for``, set when the user is created) and each desktop a
pool that selects exactly its instance; assigning the pool to the user's policy offers the desktop when the
user signs in.

A user who exists already (409 ``EXISTS_ALREADY``) is offered the desktop only when they are known to hold
their policy: the policy's notes carry the line ``vdi-studios holder: <login>``, which VDI Studios writes
after it created the user with that policy, and the platform team writes after giving an existing user the
policy. Anyone else is a ``LeostreamUserConflict``, never a silent "ready".

Removing a desktop (``remove_desktop``) deletes what registering made for it and nothing else: its pool (named
``vdi-<issue key>`` with VDI Studios' notes) and that pool's assignment in the user's own policy. The policy and
the user stay: they serve the user's other desktops, and the v1 API cannot delete a user.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from vdi.catalog import Bundle
from vdi.identity import login_key, policy_name_for
from vdi.leostream import LeostreamClient, LeostreamError
from vdi.request import DesktopRequest

ROOT_POOL_ID = 1  # "All Desktops"
HOLDER_PREFIX = "vdi-studios holder: "
NOTES_MAX = 4095  # Leostream's PolicyFull.notes


@dataclass(frozen=True)
class Registration:
    """What the broker holds for one desktop."""

    user_login: str
    policy_id: int
    policy_name: str
    pool_id: int
    pool_name: str
    assignment_id: int
    center_id: int

    def as_dict(self) -> dict:
        return asdict(self)


def pool_name_for(issue_key: str) -> str:
    return f"vdi-{issue_key}"


def pool_notes_for(issue_key: str) -> str:
    """The notes of the desktop's pool: with its name, how a removal knows VDI Studios made the pool."""
    return f"VDI Studios {issue_key}"


def _by_name(items: list[dict], name: str) -> dict | None:
    return next((item for item in items if item.get("name") == name), None)


class LeostreamUserConflict(RuntimeError):
    """The user's Leostream account exists and is not known to hold their policy; the message is for them."""

    def __init__(self, login: str, policy_name: str):
        self.login = login
        self.policy_name = policy_name
        self.operator_detail = (f"Leostream user {login!r} exists and is not known to hold the policy "
                                f"{policy_name!r} (VDI Studios did not create it, or did not see its creation "
                                f"answered): give the user that policy, add the line '{holder_line(login)}' to "
                                "the policy's notes, then retry the ticket")
        super().__init__(f"Your Leostream account {login} already exists and was not made by VDI Studios, so "
                         f"the desktop cannot be offered to it yet. The platform team must give that account "
                         f"access to the Leostream policy {policy_name}; then use Retry on this ticket.")


def holder_line(login: str) -> str:
    """The policy notes' line saying that the Leostream user ``login`` holds the policy."""
    return HOLDER_PREFIX + login_key(login)


def holds_policy(policy: dict, login: str) -> bool:
    return holder_line(login) in {line.strip().casefold() for line in str(policy.get("notes") or "").splitlines()}


class CenterNotFound(LookupError):
    """The broker has no AWS center by the connection's ``center_name`` (or not exactly one, unnamed)."""


def amazon_center(client: LeostreamClient) -> dict:
    """The AWS center that discovers the desktops: the client's ``center_name`` (the connection's extra), or
    the broker's only one."""
    name = client.center_name
    centers = [c for c in client.centers() if c.get("type") == "amazon" and (not name or c.get("name") == name)]
    if len(centers) != 1:
        wanted = f"named {name!r}" if name else "(set the connection's center_name to choose one)"
        raise CenterNotFound(f"expected one Amazon center {wanted}, found {len(centers)}")
    return centers[0]


def ensure_policy(client: LeostreamClient, name: str, notes: str) -> int:
    if existing := _by_name(client.policies(), name):
        return int(existing["id"])
    return int(client.create_policy({"name": name, "notes": notes})["id"])


def ensure_pool(client: LeostreamClient, name: str, instance_name: str, notes: str) -> int:
    """A pool whose only filter is the desktop's name: it holds exactly this instance."""
    if existing := _by_name(client.pools(), name):
        return int(existing["id"])
    return int(client.create_pool({
        "name": name,
        "display_name": name,
        "notes": notes,
        "pool_definition": {
            "restrict_by": "A",
            "parent_pool_id": ROOT_POOL_ID,
            "pool_attribute_join": "A",
            "attributes": [{"vm_table_field": "name", "condition_type": "eq", "text_to_match": instance_name}],
        },
        "provision": {"provision_on_off": 0},
    })["id"])


def ensure_assignment(client: LeostreamClient, policy_id: int, pool_id: int, offer_quantity: int) -> int:
    for assignment in client.pool_assignments(policy_id):
        if int(assignment["pool_id"]) == pool_id:
            return int(assignment["id"])
    return int(client.create_pool_assignment(policy_id, {
        "pool_id": pool_id, "offer_quantity": offer_quantity, "favor_previous_assigned": 1,
        "start_if_stopped": 1, "power_on": 1,
    })["id"])


def ensure_user(client: LeostreamClient, request: DesktopRequest, policy_id: int, policy_name: str) -> None:
    """Create the user with their policy and say so in the policy's notes; a user who exists already must be
    known to hold the policy (``LeostreamUserConflict`` otherwise)."""
    login = request.user.login
    created = client.create_user({
        "user_login": login,
        "name": request.user.display_name[:100],
        "is_local": 0,
        "auth_server": client.auth_server,
        "policy_name": policy_name,
        "notes": f"Created by VDI Studios for {request.issue_key}",
    })
    policy = client.policy(policy_id)
    if holds_policy(policy, login):
        return
    if not created:
        raise LeostreamUserConflict(login, policy_name)
    line = holder_line(login)
    notes = str(policy.get("notes") or "")[:NOTES_MAX - len(line) - 1]
    client.update_policy(policy_id, {"name": policy["name"], "notes": f"{notes}\n{line}" if notes else line})


def register_desktop(client: LeostreamClient, request: DesktopRequest, bundle: Bundle,
                     instance_name: str) -> Registration:
    """Ensure the user's policy, the user (``LeostreamUserConflict`` when theirs is not known to hold it), the
    desktop's pool and its assignment; then ask for a scan."""
    notes = pool_notes_for(request.issue_key)
    policy_name = policy_name_for(request.user.login)
    policy_id = ensure_policy(client, policy_name, f"Desktops of {request.user.login} (VDI Studios)")
    ensure_user(client, request, policy_id, policy_name)
    pool_name = pool_name_for(request.issue_key)
    pool_id = ensure_pool(client, pool_name, instance_name, notes)
    assignment_id = ensure_assignment(client, policy_id, pool_id, bundle.leostream.offer_quantity)
    center = amazon_center(client)
    client.scan_center(int(center["id"]))
    return Registration(request.user.login, policy_id, policy_name, pool_id, pool_name, assignment_id,
                        int(center["id"]))


def desktop_in_pool(client: LeostreamClient, pool_id: int, instance_name: str) -> dict | None:
    """The pool's desktop record for the instance, once the broker has discovered it."""
    pool = client.pool(pool_id)
    return next((vm for vm in pool.get("vms_list") or [] if vm.get("name") == instance_name), None)


def _our_pool(client: LeostreamClient, issue_key: str, recorded_id: int | None) -> dict | None:
    """The desktop's pool, when VDI Studios made it: the recorded one, else the one by its name; None when there
    is none, or it is not ours (another name, or other notes: someone else's pool)."""
    pool_id = recorded_id
    if pool_id is None and (listed := _by_name(client.pools(), pool_name_for(issue_key))):
        pool_id = int(listed["id"])
    if pool_id is None:
        return None
    try:
        pool = client.pool(pool_id)
    except LeostreamError as error:
        if error.status_code == 404:
            return None
        raise
    if pool.get("name") != pool_name_for(issue_key) or pool.get("notes") != pool_notes_for(issue_key):
        return None
    return pool


def remove_desktop(client: LeostreamClient, issue_key: str, login: str | None,
                   registration: dict | None = None) -> dict:
    """Take the desktop of ``issue_key`` out of the broker: its pool's assignments in the user's policy, then
    the pool, each only when VDI Studios made it (``registration`` is what ``register_desktop`` recorded; without
    it the objects are found by name). Safe to rerun; returns what it did.

    A pool another policy still offers (someone assigned it by hand) is kept, and said so: deleting it is for
    whoever made that assignment.
    """
    recorded = registration or {}
    pool = _our_pool(client, issue_key, recorded.get("pool_id"))
    result: dict = {"pool_id": pool["id"] if pool else None, "assignments_deleted": []}
    if pool is None:
        result["pool"] = "none of ours"
        return result
    policy_name = policy_name_for(login) if login else None
    policy = _by_name(client.policies(), policy_name) if policy_name else None
    if policy is not None:
        for assignment in client.pool_assignments(int(policy["id"])):
            if int(assignment["pool_id"]) == int(pool["id"]):
                client.delete_pool_assignment(int(policy["id"]), int(assignment["id"]))
                result["assignments_deleted"].append(int(assignment["id"]))
    try:
        client.delete_pool(int(pool["id"]))
        result["pool"] = "deleted"
    except LeostreamError as error:
        if error.status_code == 404:
            result["pool"] = "already deleted"
        elif error.status_code == 409:
            result["pool"] = "kept: another policy still offers it"
        else:
            raise
    return result

"""Pools: the desktops a rule selects (by attribute, center or hand-picked), with their counters."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from sandbox.leostream.broker import CONDITIONS, BrokerError, bad_data, missing, split_known, stamp
from sandbox.leostream.routes.common import broker, found, json_object, saved, unique

bp = Blueprint("pools", __name__)

POOL_FIELDS = {"name", "display_name", "notes", "running_desktops_threshold", "pool_definition", "provision",
               "domain", "log"}
POOL_DEFINITION_FIELDS = {"parent_pool_id", "restrict_by", "vm_tags", "vm_tag_join", "pool_attribute_join",
                          "adhoc_vms", "never_rogue", "server_ids", "attributes"}


def _pool_values(body: dict, current: dict | None) -> tuple[dict, list[str]]:
    accepted, extra = split_known(body, POOL_FIELDS)
    merged = dict(current or {}, **accepted)
    absent = missing(merged, ["name", "pool_definition"])
    if absent:
        raise bad_data("Missing required fields", missing_fields=absent)
    definition = merged["pool_definition"]
    if not isinstance(definition, dict):
        raise bad_data("Pool cannot be saved, some input data is not valid.",
                       errors=[{"message": "Expected object", "path": "/body/pool_definition"}])
    definition, extra_definition = split_known(definition, POOL_DEFINITION_FIELDS)
    extra += [f"pool_definition.{name}" for name in extra_definition]
    if "restrict_by" not in definition:
        raise bad_data("Missing required fields", missing_fields=["pool_definition.restrict_by"])
    definition.setdefault("parent_pool_id", 1)
    definition.setdefault("pool_attribute_join", "A")
    definition.setdefault("never_rogue", 0)
    errors = _pool_definition_errors(definition)
    if not isinstance(merged["name"], str) or len(merged["name"]) > 100:
        errors.append({"message": "Expected a string of at most 100 characters", "path": "/body/name"})
    if errors:
        raise bad_data("Pool cannot be saved, some input data is not valid.", errors=errors)
    merged["pool_definition"] = definition
    merged.setdefault("provision", {"provision_on_off": 0})
    return merged, extra


def _pool_definition_errors(definition: dict) -> list[dict]:
    """What is wrong with a pool definition: the vendor's enums and 0/1 flags, and what the sandbox supports."""
    b = broker()
    errors = []
    path = "/body/pool_definition"

    def wrong(name: str, message: str) -> None:
        errors.append({"message": message, "path": f"{path}/{name}"})

    parent = definition["parent_pool_id"]
    if not isinstance(parent, int) or parent not in b.pools:
        wrong("parent_pool_id", "Parent pool does not exist")
    for name in ("pool_attribute_join", "vm_tag_join"):
        if name in definition and definition[name] not in ("A", "O"):
            wrong(name, "Must be 'A' or 'O'")
    if definition["never_rogue"] not in (0, 1):
        wrong("never_rogue", "Expected 0 or 1")
    restrict_by = definition["restrict_by"]
    if restrict_by == "A":
        attributes = definition.get("attributes")
        if not isinstance(attributes, list) or not attributes:
            wrong("attributes", "At least one attribute is required")
        else:
            for index, attribute in enumerate(attributes):
                if not isinstance(attribute, dict) or attribute.get("condition_type") not in CONDITIONS \
                        or not attribute.get("vm_table_field"):
                    wrong(f"attributes/{index}", "Each attribute needs vm_table_field, condition_type (one of "
                          + ", ".join(CONDITIONS) + ") and text_to_match")
    elif restrict_by == "C":
        ids = definition.get("server_ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, int) and i in b.centers for i in ids):
            wrong("server_ids", "server_ids must list existing center IDs")
    elif restrict_by == "H":
        vms = definition.get("adhoc_vms")
        if not isinstance(vms, list) or not all(isinstance(vm, dict) and isinstance(vm.get("id"), int)
                                                for vm in vms):
            wrong("adhoc_vms", "adhoc_vms must list desktops as {\"id\": <desktop id>, \"name\": ...}")
    else:
        wrong("restrict_by", "The sandbox supports restrict_by 'A', 'C' and 'H'")
    return errors


@bp.get("/pools")
def list_pools():
    b = broker()
    with b.lock:
        root = request.args.get("id", type=int)
        if request.args.get("as_tree") == "1":
            return jsonify(b.pool_tree(root if root in b.pools else 1))
        pools = [p for p in b.pools.values() if root is None or p["id"] == root]
        return jsonify([b.pool_item(p) for p in pools])


@bp.post("/pools")
def add_pool():
    body = json_object()
    b = broker()
    with b.lock:
        values, extra = _pool_values(body, None)
        unique(b.pools.values(), values["name"])
        created = stamp()
        pool = {"id": b.next_id("pool"), "display_name": "", "notes": "", "read_only": 0, "is_root": 0,
                "pool_type": "D", "running_desktops_threshold": 0, "domain": {"domain_join": 0},
                "log": {"log_information_threshold": 0, "log_warning_threshold": 0, "log_error_threshold": 0},
                "created": created, "updated": created, **values}
        b.pools[pool["id"]] = pool
        return saved(b.pool_full(pool), extra)


@bp.get("/pools/<int:pool_id>")
def get_pool(pool_id: int):
    b = broker()
    with b.lock:
        pool = found(b.pools.get(pool_id))
        return jsonify(b.pool_full(pool))


@bp.put("/pools/<int:pool_id>")
def update_pool(pool_id: int):
    body = json_object()
    b = broker()
    with b.lock:
        pool = found(b.pools.get(pool_id))
        if pool.get("read_only"):
            raise BrokerError(409, "CONFLICT", "The pool is read-only")
        values, extra = _pool_values(body, {k: v for k, v in pool.items() if k in POOL_FIELDS})
        unique(b.pools.values(), values["name"], exclude_id=pool_id)
        pool.update(values, updated=stamp())
        return saved(b.pool_full(pool), extra, status=200)


@bp.delete("/pools/<int:pool_id>")
def delete_pool(pool_id: int):
    b = broker()
    with b.lock:
        pool = found(b.pools.get(pool_id))
        if pool.get("is_root"):
            raise BrokerError(409, "CONFLICT", "The root pool cannot be deleted")
        if any(a["pool_id"] == pool_id for a in b.assignments.values()):
            raise BrokerError(409, "CONFLICT", "The pool is used by a policy pool assignment")
        if any(p["pool_definition"].get("parent_pool_id") == pool_id for p in b.pools.values()):
            raise BrokerError(409, "CONFLICT", "The pool has sub-pools")
        del b.pools[pool_id]
        return "", 204

import json

import pytest

from webhook_bridge.events import Decision, Facts, Malformed, Router, dag_run_id, delivery_id, parse, staleness


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[1, 2]", b'"text"', b"null", b'{"a": NaN}', b'{"a": Infinity}', b'{"a": 1e999}',
    b'{"a": "\\u0000"}', b'{"\\u0000": 1}', b'{"a": "\\ud800"}', b"[" * 100_000, b"\xff\xfe\x00",
    b'{"a": 1', b'{"a": ' + b"9" * 5000 + b"}",
])
def test_unusable_bodies_are_malformed(body):
    with pytest.raises(Malformed):
        parse(body)


def test_a_jira_body_parses():
    assert parse(b'{"webhookEvent": "jira:issue_created", "t": "\\ud83d\\ude00"}')[0]["t"] == "\U0001F600"


def test_delivery_id_is_the_header_or_a_hash_of_the_body():
    assert delivery_id("5a8b2f1e-0c1d-4e7f-9a2b-3c4d5e6f7a8b", b"{}") == ("5a8b2f1e-0c1d-4e7f-9a2b-3c4d5e6f7a8b", False)
    derived, from_body = delivery_id(None, b"{}")
    assert from_body and derived == delivery_id("", b"{}")[0] and derived.startswith("body-sha256-")
    assert delivery_id(None, b"{ }")[0] != derived
    for bad in ("a b", "x" * 257, "tab\there", "é"):
        with pytest.raises(Malformed):
            delivery_id(bad, b"{}")


def test_a_run_id_carries_the_issue_key_and_is_the_same_for_the_same_delivery():
    run_id = dag_run_id("VDI-12", "5a8b2f1e-0c1d")
    assert run_id == "VDI-12__jira__5a8b2f1e-0c1d" == dag_run_id("VDI-12", "5a8b2f1e-0c1d")
    assert dag_run_id("VDI-12", "5a8b2f1e-0c1e") != dag_run_id("VDI-12", "5a8b2f1e-0c1d")
    odd = dag_run_id("VDI-12", "id/with#chars")
    assert odd.startswith("VDI-12__jira__sha256-") and odd == dag_run_id("VDI-12", "id/with#chars")
    assert odd != dag_run_id("VDI-12", "id/with#chars2")
    assert dag_run_id("VDI-12", "a..b").startswith("VDI-12__jira__sha256-")


@pytest.mark.parametrize("delivery", [
    "5a8b2f1e-0c1d-4e7f-9a2b-3c4d5e6f7a8b", "x" * 200, "x" * 201, "~" * 256, "a..b", "..", "id/with#chars", "é",
    "body-sha256-" + "f" * 64, "manual__2024-01-01T00:00:00+00:00", "scheduled__x",
])
def test_run_ids_pass_airflows_own_run_id_checks(delivery):
    from airflow.models.base import ID_LEN
    from airflow.models.dagrun import DagRun
    from airflow.utils.types import DagRunType

    run_id = dag_run_id("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123-9999999999", delivery)  # the longest key there is
    assert len(run_id) <= ID_LEN
    assert DagRun.validate_run_id(None, "run_id", run_id) == run_id  # raises when Airflow refuses it
    assert DagRunType.from_run_id(run_id) is DagRunType.MANUAL  # not taken for a scheduled or backfill run


def test_replay_window():
    now = 1_800_000_000_000
    assert staleness({"timestamp": now - 60_000}, now, 86400, 300) is None
    assert staleness({"timestamp": now - 86_401_000}, now, 86400, 300).startswith("stale")
    assert staleness({"timestamp": now + 301_000}, now, 86400, 300) == "timestamp in the future"
    assert staleness({"timestamp": "1"}, now, 86400, 300) == "no timestamp"
    assert staleness({"timestamp": True}, now, 86400, 300) == "no timestamp"
    assert staleness({}, now, 86400, 300) == "no timestamp"


def _facts(**fields):
    payload = {"webhookEvent": "jira:issue_created", "issue": {"key": "VDI-1", "fields": {
        "project": {"key": "VDI"}, "issuetype": {"name": "Desktop"}, "status": {"name": "Open"}}}}
    payload.update(fields)
    return Facts.of(payload)


THE_API_USER = {"accountId": "5b10a2844c20165700ede21g", "displayName": "VDI Studios"}


def _update(*items, status="Approved", **fields):
    """A jira:issue_updated by the one Jira account the product and people share, with changelog ``items``."""
    return _facts(**{"webhookEvent": "jira:issue_updated", "user": THE_API_USER,
                     "issue_event_type_name": "issue_generic", "changelog": {"id": "1", "items": list(items)},
                     "issue": {"key": "VDI-1", "fields": {"project": {"key": "VDI"}, "issuetype": {"name": "Desktop"},
                                                          "status": {"name": status}}}, **fields})


def _move(from_status, to_status, **item):
    return {"field": "status", "fieldtype": "jira", "fieldId": "status", "from": "1", "fromString": from_status,
            "to": "2", "toString": to_status, **item}


def _default_router(environ=None):
    from webhook_bridge.settings import from_environment

    return Router.from_config(from_environment(environ or {})["ROUTES"])


def test_an_approval_routes_to_vdi_provision_with_a_note_saying_so():
    decision = _default_router().decide(_update(_move("Open", "Approved")))
    assert decision == Decision("vdi_provision", None, "VDI-1 moved to Approved in Jira")
    retried = _default_router().decide(_update(_move("Failed", "approved")))  # Retry; names are case-insensitive
    assert retried.dag_id == "vdi_provision" and retried.note == "VDI-1 moved to approved in Jira"


def test_an_issue_created_in_the_trigger_status_routes_and_one_created_open_is_ignored():
    created = _facts(issue={"key": "VDI-1", "fields": {"status": {"name": "Approved"}}})
    assert _default_router().decide(created) == Decision("vdi_provision", None, "VDI-1 created in Approved in Jira")
    open_ = _default_router().decide(_facts())
    assert open_ == Decision(None, "no route for event jira:issue_created (created in Open)")


@pytest.mark.parametrize("facts, reason", [
    # The product's own transitions, made with the same account a person approves with.
    (_update(_move("Approved", "In Progress"), status="In Progress"), "(status moved to In Progress)"),
    (_update(_move("In Progress", "Ready"), status="Ready"), "(status moved to Ready)"),
    (_update(_move("In Progress", "Failed"), status="Failed"), "(status moved to Failed)"),
    # A comment (on an approved ticket too): Jira sends an update without a changelog.
    (_update(issue_event_type_name="issue_commented", comment={"body": "On its way"}), "(no status change)"),
    (_facts(webhookEvent="jira:issue_updated", issue_event_type_name="issue_commented"), "(no status change)"),
    # An edit of an approved ticket, and a custom field that happens to be called "status".
    (_update({"field": "summary", "fieldtype": "jira", "fromString": "a", "toString": "b"}), "(no status change)"),
    (_update(_move("x", "Approved", fieldtype="custom")), "(no status change)"),
    (_update({"field": "status", "fieldtype": "jira", "toString": None}), "(no status change)"),
    (_facts(webhookEvent="jira:issue_updated", changelog={"items": "not a list"}), "(no status change)"),
])
def test_what_does_not_move_the_issue_into_the_trigger_status_is_ignored_with_a_reason(facts, reason):
    assert _default_router().decide(facts) == Decision(None, f"no route for event jira:issue_updated {reason}")


def test_the_default_route_follows_the_dag_sides_trigger_status():
    router = _default_router({"VDI_JIRA_TRIGGER_STATUS": "Go"})
    assert router.decide(_update(_move("Open", "Go"), status="Go")).note == "VDI-1 moved to Go in Jira"
    assert router.decide(_update(_move("Open", "Approved"))).dag_id is None


def test_routes_by_events_and_statuses_still_work():
    router = Router.from_config(
        [{"events": ["jira:issue_created"], "dag_id": "vdi_provision"},
         {"events": ["jira:issue_updated"], "statuses": ["Removal Requested"], "dag_id": "vdi_deprovision"},
         {"moved_to": ["Approved"], "events": ["jira:issue_updated"], "dag_id": "later"}],
        projects=["VDI"], issue_types=["Desktop"])
    assert router.decide(_facts()) == Decision("vdi_provision", None, "VDI-1 created in Jira")
    removal = _facts(webhookEvent="jira:issue_updated", issue={"key": "VDI-1", "fields": {
        "project": {"key": "VDI"}, "issuetype": {"name": "Desktop"}, "status": {"name": "removal requested"}}})
    assert router.decide(removal) == Decision("vdi_deprovision", None, "VDI-1 updated in Jira")
    assert router.decide(_update(_move("Open", "Approved"))).dag_id == "later"
    assert router.decide(_facts(webhookEvent="jira:issue_updated")).reason == ("no route for event jira:issue_updated"
                                                                               " (no status change)")
    assert router.decide(_facts(webhookEvent="comment_created")) == Decision(None, "no route for event comment_created")
    other_project = _facts(issue={"key": "OPS-1", "fields": {"project": {"key": "OPS"},
                                                             "issuetype": {"name": "Desktop"}}})
    assert router.decide(other_project).reason == "project OPS is not handled"
    bug = _facts(issue={"key": "VDI-2", "fields": {"project": {"key": "VDI"}, "issuetype": {"name": "Bug"}}})
    assert router.decide(bug).reason == "issue type Bug is not handled"
    assert router.decide(_facts(issue={"key": "not a key"})).reason == "no issue key"
    assert router.decide(_facts(webhookEvent=7)).reason == "no webhookEvent"


@pytest.mark.parametrize("route, says", [
    ("vdi_provision", "a route is an object with dag_id, and moved_to or events"),
    ({"events": ["jira:issue_created"]}, "no dag_id"),
    ({"dag_id": "", "moved_to": ["Approved"]}, "no dag_id"),
    ({"dag_id": "x", "events": ["e"], "typo": 1}, "unknown key typo"),
    ({"dag_id": "x"}, "neither moved_to nor events"),
    ({"dag_id": "x", "moved_to": "Approved"}, "moved_to must be a list of names"),
    ({"dag_id": "x", "moved_to": []}, "moved_to is empty"),
    ({"dag_id": "x", "events": ["jira:issue_updated", 3]}, "events must be a list of names"),
    ({"dag_id": "x", "moved_to": ["Approved"], "statuses": ["Approved"]}, "moved_to and statuses do not go together"),
    ({"dag_id": "x", "moved_to": ["Approved"], "events": ["comment_created"]},
     "moved_to applies to jira:issue_created and jira:issue_updated only"),
])
def test_a_bad_route_is_refused_saying_which_and_why(route, says):
    with pytest.raises(ValueError) as refused:
        Router.from_config([{"moved_to": ["Approved"], "dag_id": "vdi_provision"}, route])
    assert str(refused.value).startswith("BRIDGE_ROUTES route 2 ") and says in str(refused.value)


def test_bridge_routes_and_secrets_are_read_from_the_environment():
    from webhook_bridge.settings import from_environment

    assert from_environment({"BRIDGE_ROUTES": ""})["ROUTES"] == [
        {"moved_to": ["Approved"], "dag_id": "vdi_provision"},
        {"moved_to": ["Removal Requested"], "issue_types": ["Desktop Removal"], "dag_id": "vdi_deprovision"}]
    config = from_environment({"BRIDGE_ROUTES": json.dumps([{"events": ["e"], "dag_id": "d"}]),
                               "JIRA_WEBHOOK_SECRET": "a", "JIRA_WEBHOOK_PREVIOUS_SECRETS": "b c\n\n d"})
    assert config["ROUTES"] == [{"events": ["e"], "dag_id": "d"}]
    assert config["WEBHOOK_SECRETS"] == ["a", "b c", " d"]
    for raw, says in (("[{", "BRIDGE_ROUTES is not JSON"), ('{"dag_id": "d"}', "BRIDGE_ROUTES is not a JSON list")):
        with pytest.raises(ValueError, match=says):
            from_environment({"BRIDGE_ROUTES": raw})


def test_plain_bodies_are_stored_as_received_and_the_others_are_checked():
    from webhook_bridge.events import parse

    plain = b'{"webhookEvent": "jira:issue_created", "n": 1.5e10, "t": "caf\xc3\xa9 \\n \\u00e9"}'
    payload, text = parse(plain)
    assert text == plain.decode() and payload["t"] == "café \n é"
    # Escapes that may be surrogates or NUL, raw surrogate-range bytes, BOM, 3-digit exponents: walked instead.
    for body in (b'{"t": "\\ud83d\\ude00"}', '{"t": "한"}'.encode(), b'\xef\xbb\xbf{"a": 1}', b'{"a": 1e100}'):
        payload, text = parse(body)
        assert text is None and payload

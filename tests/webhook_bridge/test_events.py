import json

import pytest

from webhook_bridge.events import Facts, Malformed, Router, dag_run_id, delivery_id, parse, staleness


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


def test_dag_run_id_is_readable_when_safe_and_a_stable_digest_otherwise():
    assert dag_run_id("5a8b2f1e-0c1d") == "jira__5a8b2f1e-0c1d"
    odd = dag_run_id("id/with#chars")
    assert odd.startswith("jira__sha256-") and odd == dag_run_id("id/with#chars") != dag_run_id("id/with#chars2")
    import re
    assert re.fullmatch(r"[A-Za-z0-9_.~:+-]+", odd) and len(dag_run_id("x" * 256)) <= 250


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


def test_routing_by_configuration():
    router = Router.from_config(
        [{"events": ["jira:issue_created"], "dag_id": "vdi_provision"},
         {"events": ["jira:issue_updated"], "statuses": ["Removal Requested"], "dag_id": "vdi_deprovision"}],
        projects=["VDI"], issue_types=["Desktop"])
    assert router.decide(_facts()).dag_id == "vdi_provision"
    removal = _facts(webhookEvent="jira:issue_updated", issue={"key": "VDI-1", "fields": {
        "project": {"key": "VDI"}, "issuetype": {"name": "Desktop"}, "status": {"name": "Removal Requested"}}})
    assert router.decide(removal).dag_id == "vdi_deprovision"
    assert router.decide(_facts(webhookEvent="jira:issue_updated")).reason == "no route for event jira:issue_updated"
    assert router.decide(_facts(webhookEvent="comment_created")).dag_id is None
    other_project = _facts(issue={"key": "OPS-1", "fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Desktop"}}})
    assert router.decide(other_project).reason == "project OPS is not handled"
    bug = _facts(issue={"key": "VDI-2", "fields": {"project": {"key": "VDI"}, "issuetype": {"name": "Bug"}}})
    assert router.decide(bug).reason == "issue type Bug is not handled"
    assert router.decide(_facts(issue={"key": "not a key"})).reason == "no issue key"
    assert router.decide(_facts(webhookEvent=7)).reason == "no webhookEvent"


def test_a_route_needs_dag_id_and_events():
    with pytest.raises(ValueError):
        Router.from_config([{"events": ["jira:issue_created"]}])
    with pytest.raises(ValueError):
        Router.from_config([{"dag_id": "x", "events": ["e"], "typo": 1}])


def test_default_routes_send_created_issues_to_vdi_provision():
    from webhook_bridge.settings import from_environment

    config = from_environment({"BRIDGE_ROUTES": ""})
    assert Router.from_config(config["ROUTES"]).decide(_facts()).dag_id == "vdi_provision"
    config = from_environment({"BRIDGE_ROUTES": json.dumps([{"events": ["e"], "dag_id": "d"}]),
                               "JIRA_WEBHOOK_SECRET": "a", "JIRA_WEBHOOK_PREVIOUS_SECRETS": "b c\n\n d"})
    assert config["ROUTES"] == [{"events": ["e"], "dag_id": "d"}]
    assert config["WEBHOOK_SECRETS"] == ["a", "b c", " d"]


def test_plain_bodies_are_stored_as_received_and_the_others_are_checked():
    from webhook_bridge.events import parse

    plain = b'{"webhookEvent": "jira:issue_created", "n": 1.5e10, "t": "caf\xc3\xa9 \\n \\u00e9"}'
    payload, text = parse(plain)
    assert text == plain.decode() and payload["t"] == "café \n é"
    # Escapes that may be surrogates or NUL, raw surrogate-range bytes, BOM, 3-digit exponents: walked instead.
    for body in (b'{"t": "\\ud83d\\ude00"}', '{"t": "한"}'.encode(), b'\xef\xbb\xbf{"a": 1}', b'{"a": 1e100}'):
        payload, text = parse(body)
        assert text is None and payload

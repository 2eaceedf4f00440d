"""``vdi.leostream`` (client, hook, ``broker_session``) and ``vdi.broker`` against the Leostream sandbox served
in-process, with the connection set as ``AIRFLOW_CONN_*`` in the environment (no Airflow database)."""

from __future__ import annotations

import json

import pytest
import requests

from tests.conftest import wait_until
from tests.sandbox.leostream.conftest import API_PASSWORD, API_USER, leostream, leostream_spec  # noqa: F401

API = "/rest/v1"


def set_connection(monkeypatch, host: str, conn_id: str = "leostream_default", **extra) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(
        {"conn_type": "leostream", "host": host, "login": API_USER, "password": API_PASSWORD, "extra": extra}))


def calls(sandbox, **params) -> list[dict]:
    """The sandbox's log of the broker API calls it served."""
    return [call for call in requests.get(f"{sandbox.url}/_sandbox/calls", params=params, timeout=5).json()
            if call["path"].startswith(API)]


def add_fault(sandbox, **spec) -> None:
    requests.post(f"{sandbox.url}/_sandbox/faults", json=spec, timeout=5).raise_for_status()


def desktop_request(issue_key: str = "VDI-9", login: str = "alice"):
    from vdi.request import DesktopRequest, DesktopUser

    return DesktopRequest(issue_key=issue_key, project_key="VDI", issue_type="Desktop Request", status="Approved",
                          bundle="standard", user=DesktopUser(login=login, display_name="Alice Artist"))


@pytest.fixture
def broker(leostream):
    """A client on the Leostream sandbox (with its AWS center), its traffic checked against the document."""
    from vdi.leostream import LeostreamClient

    leostream.login()
    leostream.add_center()
    with LeostreamClient(leostream.url, API_USER, API_PASSWORD,
                         session=leostream.spec.watch(requests.Session())) as client:
        yield client
    leostream.spec.assert_clean()


def register(client, issue_key: str, login: str):
    from vdi.broker import register_desktop
    from vdi.catalog import load_catalog

    return register_desktop(client, desktop_request(issue_key, login), load_catalog().bundles["standard"],
                            f"vdi-{issue_key}")


def sign_in(sandbox, login: str) -> requests.Response:
    """The user signing in through a Leostream client (the sandbox's hook): the desktop they are offered."""
    return requests.post(f"{sandbox.url}/_sandbox/sign-in", json={"user_login": login}, timeout=5)


def test_broker_registration_steps_send_what_the_leostream_document_allows(leostream):
    from vdi.broker import amazon_center, desktop_in_pool, ensure_assignment, ensure_policy, ensure_pool
    from vdi.leostream import LeostreamClient

    leostream.launch("vdi-VDI-9")
    leostream.login()
    leostream.add_center()
    client = LeostreamClient(leostream.url, API_USER, API_PASSWORD, session=leostream.spec.watch(requests.Session()))
    with client:
        policy_id = ensure_policy(client, "vdi-user-alice", "Desktops of alice")
        assert ensure_policy(client, "vdi-user-alice", "again") == policy_id
        pool_id = ensure_pool(client, "vdi-VDI-9", "vdi-VDI-9", "VDI Studios VDI-9")
        assert ensure_pool(client, "vdi-VDI-9", "vdi-VDI-9", "again") == pool_id
        assignment_id = ensure_assignment(client, policy_id, pool_id, 1)
        assert ensure_assignment(client, policy_id, pool_id, 1) == assignment_id
        assert client.create_user({"user_login": "alice", "name": "Alice", "is_local": 0,
                                   "auth_server": "Studio directory", "policy_name": "vdi-user-alice"}) is True
        assert client.create_user({"user_login": "alice", "name": "Alice", "is_local": 0,
                                   "auth_server": "Studio directory", "policy_name": "vdi-user-alice"}) is False
        client.scan_center(int(amazon_center(client)["id"]))
        vm = wait_until(lambda: desktop_in_pool(client, pool_id, "vdi-VDI-9"), message="the desktop in its pool")
        assert vm["user_id"] == 0
    leostream.spec.assert_clean()


def test_broker_session_logs_in_on_first_use_and_out_at_the_end(leostream, monkeypatch):
    from vdi.leostream import broker_session

    set_connection(monkeypatch, leostream.url)
    requests.delete(f"{leostream.url}/_sandbox/calls", timeout=5)
    with broker_session() as client:
        assert calls(leostream) == []
        client.centers()
        client.pools()
    assert [(call["method"], call["path"], call["status"]) for call in calls(leostream)] == [
        ("POST", f"{API}/session/login", 200), ("GET", f"{API}/centers", 200), ("GET", f"{API}/pools", 200),
        ("POST", f"{API}/session/logout", 200)]


def test_register_desktop_uses_the_connections_aws_center_and_auth_server(leostream, monkeypatch):
    from vdi.broker import register_desktop
    from vdi.catalog import load_catalog
    from vdi.leostream import broker_session

    leostream.login()
    leostream.add_center("AWS test")
    studio = leostream.add_center("AWS studio")
    set_connection(monkeypatch, leostream.url, center_name="AWS studio", auth_server="corp.studio.example")
    with broker_session() as client:
        registration = register_desktop(client, desktop_request(), load_catalog().bundles["standard"], "vdi-VDI-9")
    assert registration.center_id == int(studio["id"])
    [created] = calls(leostream, method="POST", path=f"{API}/users")
    assert created["body"]["auth_server"] == "corp.studio.example"


def test_without_a_center_name_a_broker_with_two_aws_centers_is_refused_by_name(leostream, monkeypatch):
    from vdi.broker import CenterNotFound, amazon_center
    from vdi.leostream import broker_session

    leostream.login()
    leostream.add_center("AWS test")
    leostream.add_center("AWS studio")
    set_connection(monkeypatch, leostream.url)
    with broker_session() as client, pytest.raises(CenterNotFound, match="set the connection's center_name"):
        amazon_center(client)


def test_the_connections_retries_decide_whether_a_503_is_resent(leostream, monkeypatch):
    from vdi.leostream import LeostreamError, broker_session

    add_fault(leostream, method="GET", path=f"{API}/centers", status=503)
    set_connection(monkeypatch, leostream.url, retries=0)
    with broker_session() as client, pytest.raises(LeostreamError, match="HTTP 503"):
        client.centers()

    add_fault(leostream, method="GET", path=f"{API}/centers", status=503)
    set_connection(monkeypatch, leostream.url, retries=2, retry_backoff=0)
    with broker_session() as client:
        assert client.centers() == []


def test_the_connections_timeout_bounds_each_call(leostream, monkeypatch):
    from vdi.leostream import broker_session

    add_fault(leostream, method="GET", path=f"{API}/pools", latency_ms=1000)
    set_connection(monkeypatch, leostream.url, timeout=0.2)
    with broker_session() as client, pytest.raises(requests.RequestException, match="timed out"):
        client.pools()

    add_fault(leostream, method="GET", path=f"{API}/pools", latency_ms=1000)
    set_connection(monkeypatch, leostream.url)
    with broker_session() as client:
        assert [pool["name"] for pool in client.pools()] == ["All Desktops"]


@pytest.mark.parametrize(("verify", "expected"), [
    (None, True), (True, True), (False, False), ("false", False), ("True", True), ("/etc/ssl/broker-ca.pem",
                                                                                    "/etc/ssl/broker-ca.pem")])
def test_tls_verification_comes_from_the_connections_verify_extra(monkeypatch, verify, expected):
    from vdi.leostream import LeostreamHook

    extra = {} if verify is None else {"verify": verify}
    set_connection(monkeypatch, "https://leostream.studio.example", **extra)
    assert LeostreamHook().get_conn().session.verify == expected


@pytest.mark.parametrize(("connection", "base_url", "broker_address"), [
    ({"host": "https://leostream.studio.example/"}, "https://leostream.studio.example", "leostream.studio.example"),
    ({"host": "https://leostream.studio.example:8443"}, "https://leostream.studio.example:8443",
     "leostream.studio.example:8443"),
    ({"host": "leostream.studio.example", "port": 8443}, "https://leostream.studio.example:8443",
     "leostream.studio.example:8443"),
    ({"host": "leostream.studio.example", "schema": "http"}, "http://leostream.studio.example",
     "leostream.studio.example"),
    ({"host": "https://leostream-api.studio.example", "extra": {"broker_address": "10.0.4.20"}},
     "https://leostream-api.studio.example", "10.0.4.20"),
])
def test_base_url_follows_the_http_providers_rules_and_the_broker_address_defaults_to_its_host(
        monkeypatch, connection, base_url, broker_address):
    from vdi.leostream import LeostreamHook

    monkeypatch.setenv("AIRFLOW_CONN_LEOSTREAM_DEFAULT", json.dumps({"conn_type": "leostream", **connection}))
    hook = LeostreamHook()
    assert (hook.base_url, hook.broker_address()) == (base_url, broker_address)


def test_test_connection_logs_in_finds_the_center_and_logs_out(leostream, monkeypatch):
    from vdi.leostream import LeostreamHook

    leostream.login()
    leostream.add_center("AWS studio")
    set_connection(monkeypatch, leostream.url, center_name="AWS studio")
    requests.delete(f"{leostream.url}/_sandbox/calls", timeout=5)
    ok, message = LeostreamHook().test_connection()
    assert ok, message
    assert "'AWS studio'" in message and API_PASSWORD not in message
    assert [call["path"] for call in calls(leostream)] == [
        f"{API}/session/login", f"{API}/centers", f"{API}/session/logout"]


def test_test_connection_reports_a_refused_login_without_the_password(leostream, monkeypatch):
    from vdi.leostream import LeostreamHook

    monkeypatch.setenv("AIRFLOW_CONN_LEOSTREAM_DEFAULT", json.dumps(
        {"conn_type": "leostream", "host": leostream.url, "login": API_USER, "password": "not-the-password"}))
    ok, message = LeostreamHook().test_connection()
    assert not ok
    assert "/session/login: HTTP 401" in message and "not-the-password" not in message


def test_test_connection_fails_when_the_named_center_is_missing(leostream, monkeypatch):
    from vdi.leostream import LeostreamHook

    leostream.login()
    leostream.add_center("AWS test")
    set_connection(monkeypatch, leostream.url, center_name="AWS studio")
    ok, message = LeostreamHook().test_connection()
    assert not ok
    assert message.startswith("logged in to") and "named 'AWS studio', found 0" in message


def test_a_scan_requested_while_one_is_running_counts_as_requested(leostream):
    from vdi.broker import amazon_center
    from vdi.leostream import LeostreamClient, LeostreamError

    leostream.login()
    leostream.add_center()
    client = LeostreamClient(leostream.url, API_USER, API_PASSWORD, session=leostream.spec.watch(requests.Session()))
    with client:
        center_id = int(amazon_center(client)["id"])
        # The broker answers 409 CONFLICT while a scan of the center runs: what the caller wanted is under way.
        add_fault(leostream, method="POST", path=f"{API}/centers/{center_id}/scan", status=409, times=1)
        assert client.scan_center(center_id) is None
        assert [c["status"] for c in calls(leostream, method="POST", path=f"{API}/centers/{center_id}/scan")] == [409]
        with pytest.raises(LeostreamError) as refused:
            client.scan_center(center_id + 1000)
        assert refused.value.status_code == 404


# --- who gets which desktop ---------------------------------------------------------------------------------
def test_logins_that_read_alike_are_offered_only_their_own_desktops(leostream, broker):
    from vdi.broker import desktop_in_pool

    logins = {"VDI-1": "jane+vdi@studio.example", "VDI-2": "jane-vdi@studio.example"}
    for key in logins:
        leostream.launch(f"vdi-{key}")
    registrations = {key: register(broker, key, login) for key, login in logins.items()}
    assert registrations["VDI-1"].policy_id != registrations["VDI-2"].policy_id
    for key, registration in registrations.items():
        wait_until(lambda: desktop_in_pool(broker, registration.pool_id, f"vdi-{key}"),
                   message=f"the desktop of {key} in its pool")
    for key, login in logins.items():
        offered = sign_in(leostream, login)
        assert offered.status_code == 200, offered.text
        assert offered.json()["desktop"]["name"] == f"vdi-{key}"
    assert sign_in(leostream, "jane+vdi@studio.example").json()["desktop"]["name"] == "vdi-VDI-1"


def test_one_user_in_any_case_of_their_login_has_one_policy_and_one_leostream_user(leostream, broker):
    first = register(broker, "VDI-3", "Jane@Studio.Example")
    second = register(broker, "VDI-4", "jane@studio.example")
    assert (first.policy_id, first.user_login) == (second.policy_id, "jane@studio.example")
    assert {a["pool_id"] for a in broker.pool_assignments(first.policy_id)} == {first.pool_id, second.pool_id}
    created = calls(leostream, method="POST", path=f"{API}/users")
    assert [(c["body"]["user_login"], c["status"]) for c in created] == [
        ("jane@studio.example", 201), ("jane@studio.example", 409)]


def test_a_user_vdi_studios_made_is_its_own_on_the_next_request(leostream, broker):
    from vdi.broker import holder_line

    first = register(broker, "VDI-5", "alice@studio.example")
    assert register(broker, "VDI-5", "alice@studio.example") == first
    register(broker, "VDI-6", "alice@studio.example")
    notes = broker.policy(first.policy_id)["notes"].splitlines()
    assert notes.count(holder_line("alice@studio.example")) == 1
    assert [c["status"] for c in calls(leostream, method="PUT", path=f"{API}/policies/*")] == [200]


def test_a_leostream_user_made_by_someone_else_fails_the_request_in_plain_words(leostream, broker):
    from vdi.broker import LeostreamUserConflict
    from vdi.identity import policy_name_for

    broker.create_user({"user_login": "bob@studio.example", "name": "Bob", "is_local": 0,
                        "auth_server": "Studio directory"})
    with pytest.raises(LeostreamUserConflict) as conflict:
        register(broker, "VDI-7", "Bob@Studio.Example")
    policy = policy_name_for("bob@studio.example")
    assert str(conflict.value) == (
        "Your Leostream account bob@studio.example already exists and was not made by VDI Studios, so the desktop "
        f"cannot be offered to it yet. The platform team must give that account access to the Leostream policy "
        f"{policy}; then use Retry on this ticket.")
    assert "vdi-studios holder: bob@studio.example" in conflict.value.operator_detail
    assert "vdi-VDI-7" not in [p["name"] for p in broker.pools()]
    [held] = [p for p in broker.policies() if p["name"] == policy]
    assert broker.pool_assignments(held["id"]) == []


def test_a_user_the_platform_team_gave_the_policy_is_offered_the_desktop(leostream, broker):
    from vdi.broker import LeostreamUserConflict, holder_line

    broker.create_user({"user_login": "carol@studio.example", "name": "Carol", "is_local": 0,
                        "auth_server": "Studio directory"})
    with pytest.raises(LeostreamUserConflict) as conflict:
        register(broker, "VDI-8", "carol@studio.example")
    [policy] = [p for p in broker.policies() if p["name"] == conflict.value.policy_name]
    notes = broker.policy(policy["id"])["notes"]
    broker.update_policy(policy["id"], {"name": policy["name"],
                                        "notes": f"{notes}\nVDI-Studios holder: Carol@Studio.Example"})
    registration = register(broker, "VDI-8", "carol@studio.example")
    assert registration.policy_id == policy["id"]
    assert [a["pool_id"] for a in broker.pool_assignments(policy["id"])] == [registration.pool_id]
    assert holder_line("carol@studio.example") == "vdi-studios holder: carol@studio.example"


# --- the broker unavailable, a session expiring mid-run ---------------------------------------------------------
def test_a_session_expiring_mid_registration_is_renewed_by_one_login_and_nothing_is_made_twice(leostream, broker):
    requests.delete(f"{leostream.url}/_sandbox/calls", timeout=5)
    add_fault(leostream, method="POST", path=f"{API}/pools", expire_session=True)
    registration = register(broker, "VDI-21", "alice")
    trail = [(c["method"], c["path"], c["status"]) for c in calls(leostream)]
    refused = trail.index(("POST", f"{API}/pools", 401))
    assert trail[refused + 1:refused + 3] == [("POST", f"{API}/session/login", 200), ("POST", f"{API}/pools", 201)]
    assert [p["id"] for p in broker.pools() if p["name"] == "vdi-VDI-21"] == [registration.pool_id]
    assert [a["pool_id"] for a in broker.pool_assignments(registration.policy_id)] == [registration.pool_id]


def test_a_session_expiring_again_right_after_its_renewal_fails_the_call_instead_of_logging_in_again(leostream, broker):
    from vdi.leostream import LeostreamError

    add_fault(leostream, method="GET", path=f"{API}/pools", expire_session=True, times=2)
    with pytest.raises(LeostreamError, match="HTTP 401 UNAUTHORIZED"):
        broker.pools()
    assert [p["name"] for p in broker.pools()] == ["All Desktops"]


def test_a_broker_answering_503_for_seconds_is_sat_out_by_the_shared_retries(leostream, broker):
    add_fault(leostream, path=f"{API}/*", status=503, times=None, for_s=2)
    requests.delete(f"{leostream.url}/_sandbox/calls", timeout=5)
    registration = register(broker, "VDI-22", "bob")
    answered = [call["status"] for call in calls(leostream)]
    assert 503 in answered and answered[-1] in (200, 202)
    assert [p["id"] for p in broker.pools() if p["name"] == "vdi-VDI-22"] == [registration.pool_id]

"""The Leostream sandbox's REST API v1 subset over real HTTP: shapes (checked against the vendor's OpenAPI document
by the ``leostream`` fixture), sessions, 0/1 booleans, ``extra_fields``, masked secrets and the broker's errors."""

from __future__ import annotations

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from tests.sandbox.leostream.conftest import API_PASSWORD, API_USER, REGION, make_leostream
from tests.conftest import wait_until


def test_every_operation_of_the_subset_matches_the_openapi_document(leostream):
    leostream.launch("vdi-VDI-1")
    leostream.login()
    api, http = leostream.api, leostream.http
    center = leostream.add_center()
    leostream.scan(center["id"])
    pool = http.post(f"{api}/pools", json={"name": "vdi-VDI-1", "display_name": "Desktop VDI-1", "pool_definition": {
        "restrict_by": "A", "attributes": [{"vm_table_field": "name", "condition_type": "eq",
                                            "text_to_match": "vdi-VDI-1"}]}, "provision": {"provision_on_off": 0}})
    policy = http.post(f"{api}/policies", json={"name": "vdi-VDI-1", "max_desktops": 1})
    pool_id, policy_id = pool.json()["stored_data"]["id"], policy.json()["stored_data"]["id"]
    assignment = http.post(f"{api}/policies/{policy_id}/pool-assignments", json={"pool_id": pool_id,
                                                                                "start_if_stopped": 1})
    assignment_id = assignment.json()["stored_data"]["id"]
    calls = [
        pool, policy, assignment,
        http.get(f"{api}/centers"), http.get(f"{api}/centers/{center['id']}"),
        http.get(f"{api}/centers/{center['id']}", params={"short": 1}),
        http.put(f"{api}/centers/amazon/{center['id']}", json={"center_definition": {
            "name": "AWS", "type": "amazon", "vc_auth_method": "access_key", "vc_datacenter": REGION,
            "vc_name": "AKIASANDBOX", "notes": "renamed"}}),
        http.get(f"{api}/pools"), http.get(f"{api}/pools", params={"as_tree": 1}), http.get(f"{api}/pools/{pool_id}"),
        http.put(f"{api}/pools/{pool_id}", json={"name": "vdi-VDI-1", "notes": "n", "pool_definition": {
            "restrict_by": "A", "attributes": [{"vm_table_field": "name", "condition_type": "bw",
                                                "text_to_match": "vdi-VDI-1"}]}}),
        http.get(f"{api}/policies"), http.get(f"{api}/policies/{policy_id}"),
        http.put(f"{api}/policies/{policy_id}", json={"name": "vdi-VDI-1", "notes": "x"}),
        http.get(f"{api}/policies/{policy_id}/pool-assignments"),
        http.get(f"{api}/policies/{policy_id}/pool-assignments/{assignment_id}"),
        http.put(f"{api}/policies/{policy_id}/pool-assignments/{assignment_id}", json={"pool_id": pool_id,
                                                                                      "offer_quantity": 1}),
        http.post(f"{api}/users", json={"user_login": "alice", "name": "Alice", "is_local": 0,
                                        "auth_server": "studio.example", "policy_name": "vdi-VDI-1"}),
        http.get(f"{api}/system/health"),
        http.delete(f"{api}/policies/{policy_id}/pool-assignments/{assignment_id}"),
        http.delete(f"{api}/pools/{pool_id}"), http.delete(f"{api}/policies/{policy_id}"),
        http.delete(f"{api}/centers/{center['id']}"),
    ]
    assert all(c.status_code < 300 for c in calls), [(c.request.url, c.status_code, c.text) for c in calls]
    errors = [
        http.get(f"{api}/pools/999"),
        http.post(f"{api}/pools", json={"name": "All Desktops", "pool_definition": {"restrict_by": "C",
                                                                                   "server_ids": []}}),
        http.post(f"{api}/users", json={"user_login": "bob", "name": "Bob", "is_local": 0,
                                        "auth_server": "studio.example"}),
        http.post(f"{api}/users", json={"user_login": "bob", "name": "Bob", "is_local": 0,
                                        "auth_server": "studio.example"}),
        http.post(f"{api}/session/login", json={"user_login": API_USER, "password": "wrong-password"}),
        http.post(f"{api}/session/logout"),
        http.get(f"{api}/centers"),
    ]
    assert [e.status_code for e in errors] == [404, 400, 201, 409, 401, 200, 401]
    leostream.spec.assert_clean()


def test_login_issues_a_sid_and_logout_ends_it(leostream):
    sid = leostream.login()
    assert leostream.http.get(f"{leostream.api}/policies").json() == [{"id": 1, "name": "Default"}]
    assert leostream.http.post(f"{leostream.api}/session/logout").json() == {"message": "Signed out user"}
    after = requests.get(f"{leostream.api}/policies", headers={"Authorization": f"Bearer {sid}"}, timeout=5)
    assert after.status_code == 401 and after.json()["error_status"] == "UNAUTHORIZED"
    form = requests.post(f"{leostream.api}/session/login", files={"user_login": (None, API_USER),
                                                                  "password": (None, API_PASSWORD)}, timeout=5)
    assert form.status_code == 200 and form.json()["sid"] != sid


def test_calls_without_a_valid_sid_get_401_unauthorized(leostream):
    for headers in ({}, {"Authorization": "Bearer not-a-session"}, {"Authorization": f"Basic {API_PASSWORD}"}):
        with leostream.spec.sending_bad_requests():
            refused = leostream.http.get(f"{leostream.api}/pools", headers=headers)
        assert refused.status_code == 401
        assert refused.json() == {"error_status": "UNAUTHORIZED",
                                  "error_message": "No correct Authorization header provided"}


def test_login_errors_use_the_brokers_codes(leostream):
    with leostream.spec.sending_bad_requests():
        missing = leostream.http.post(f"{leostream.api}/session/login", json={"user_login": API_USER})
    assert missing.status_code == 400 and missing.json()["missing_fields"] == ["password"]
    wrong = leostream.http.post(f"{leostream.api}/session/login", json={"user_login": API_USER, "password": "nope!"})
    assert wrong.status_code == 401 and wrong.json()["error_status"] == "INVALID_CREDENTIALS"
    leostream.login()
    leostream.http.post(f"{leostream.api}/users", json={"user_login": "carol", "name": "Carol", "is_local": 1,
                                                        "password": "carol-pass"})
    end_user = leostream.http.post(f"{leostream.api}/session/login", json={"user_login": "carol",
                                                                          "password": "carol-pass"})
    assert end_user.status_code == 403 and end_user.json()["error_status"] == "INSUFFICIENT_PERMISSIONS"


def test_sessions_expire_after_their_idle_lifetime(leostream_spec, moto_endpoint):
    leostream_spec.reset()
    with make_leostream(moto_endpoint, SESSION_TTL_S=0.3) as (url, _):
        http = leostream_spec.watch(requests.Session())
        sid = http.post(f"{url}/rest/v1/session/login", json={"user_login": API_USER,
                                                              "password": API_PASSWORD}).json()["sid"]
        headers = {"Authorization": f"Bearer {sid}"}
        assert http.get(f"{url}/rest/v1/centers", headers=headers).status_code == 200
        def refused_body():
            answer = http.get(f"{url}/rest/v1/centers", headers=headers)
            return answer.json() if answer.status_code == 401 else None

        body = wait_until(refused_body, timeout_s=10, message="the sid to expire")
        assert body["error_status"] == "UNAUTHORIZED" and "expired" in body["error_message"]
    leostream_spec.assert_clean()


def test_the_admin_hook_expires_every_session_at_once(leostream):
    leostream.login()
    assert requests.post(f"{leostream.url}/_sandbox/sessions/expire", timeout=5).json() == {"expired": 1}
    assert leostream.http.get(f"{leostream.api}/centers").status_code == 401


def test_booleans_are_0_or_1_unknown_fields_are_echoed_not_saved(leostream):
    leostream.login()
    pool = leostream.http.post(f"{leostream.api}/pools", json={
        "name": "flags", "pool_definition": {"restrict_by": "H", "adhoc_vms": []},
        "provision": {"provision_on_off": False}, "colour": "blue"})
    assert pool.status_code == 201
    assert pool.json()["stored_data"]["provision"]["provision_on_off"] == 0
    assert pool.json()["extra_fields"] == ["colour"] and "colour" not in pool.json()["stored_data"]
    response = leostream.http.post(f"{leostream.api}/policies", json={
        "name": "flags", "single_desktop_only": 1, "pool_assignments": [{"pool_id": 1}]})
    body = response.json()
    assert response.status_code == 201
    assert body["stored_data"]["single_desktop_only"] == 1 and body["stored_data"]["is_default"] == 0
    assert body["warnings"] == {"pool_assignments": "Policy Pool Assignments should be modified via own API methods"}
    assert body["stored_data"]["pool_assignments"] == []


def test_secrets_come_back_masked_and_an_echoed_mask_keeps_the_secret(leostream):
    leostream.login()
    center = leostream.add_center(vc_password="the-real-secret")
    assert center["center_definition"]["vc_password"] == "**********"
    fetched = leostream.http.get(f"{leostream.api}/centers/{center['id']}").json()
    assert fetched["center_definition"]["vc_password"] == "**********"
    definition = dict(fetched["center_definition"], notes="edited")
    known = {k: definition[k] for k in ("name", "type", "vc_auth_method", "vc_datacenter", "vc_name",
                                        "vc_password", "notes")}
    updated = leostream.http.put(f"{leostream.api}/centers/amazon/{center['id']}",
                                 json={"center_definition": known})
    assert updated.status_code == 200 and updated.json()["stored_data"]["center_definition"]["notes"] == "edited"
    assert leostream.app.extensions["leostream_broker"].centers[center["id"]]["_secret"] == "the-real-secret"
    assert "the-real-secret" not in str(leostream.app.extensions["sandbox_traffic"].calls())


def test_names_are_unique_and_users_exist_only_once(leostream):
    leostream.login()
    leostream.add_center("one")
    duplicate = leostream.http.post(f"{leostream.api}/centers/amazon", json={"center_definition": {
        "name": "one", "type": "amazon", "vc_auth_method": "attached_role", "vc_datacenter": "us-east-1"}})
    assert duplicate.status_code == 409 and duplicate.json() == {
        "error_status": "NOT_UNIQUE", "error_message": "Listed fields should contain only unique values",
        "items": ["name"]}
    user = {"user_login": "bob", "name": "Bob", "is_local": 0, "auth_server": "studio.example"}
    assert leostream.http.post(f"{leostream.api}/users", json=user).status_code == 201
    again = leostream.http.post(f"{leostream.api}/users", json=dict(user, user_login="BOB"))
    assert again.status_code == 409 and again.json() == {"error_status": "EXISTS_ALREADY",
                                                          "error_message": "User \"BOB\" already exists"}


def test_bad_input_gets_bad_data_with_the_fields_named(leostream):
    leostream.login()
    with leostream.spec.sending_bad_requests():
        answers = {
            "no user fields": leostream.http.post(f"{leostream.api}/users", json={"user_login": "x"}),
            "local without password": leostream.http.post(f"{leostream.api}/users", json={
                "user_login": "x", "name": "X", "is_local": 1}),
            "unknown policy": leostream.http.post(f"{leostream.api}/users", json={
                "user_login": "x", "name": "X", "is_local": 0, "auth_server": "ad", "policy_name": "nope"}),
            "pool without definition": leostream.http.post(f"{leostream.api}/pools", json={"name": "p"}),
            "bad restrict_by": leostream.http.post(f"{leostream.api}/pools", json={
                "name": "p", "pool_definition": {"restrict_by": "A", "attributes": [{"vm_table_field": "name"}]}}),
            "assignment to a missing pool": leostream.http.post(f"{leostream.api}/policies/1/pool-assignments",
                                                                json={"pool_id": 77}),
            "not json": leostream.http.post(f"{leostream.api}/pools", data="{nope",
                                            headers={"Content-Type": "application/json"}),
            "a list": leostream.http.post(f"{leostream.api}/policies", json=[1, 2]),
        }
    for what, answer in answers.items():
        assert answer.status_code == 400, what
        assert answer.json()["error_status"] == "BAD_DATA", what
        assert "Traceback" not in answer.text
    assert answers["no user fields"].json()["missing_fields"] == ["name", "is_local"]
    assert answers["local without password"].json()["missing_fields"] == ["password"]
    assert answers["unknown policy"].json()["errors"] == [{"message": "Policy \"nope\" not found",
                                                          "path": "/body/policy_name"}]
    assert answers["bad restrict_by"].json()["errors"][0]["path"] == "/body/pool_definition/attributes/0"


def test_missing_objects_are_404_without_a_body(leostream):
    leostream.login()
    for path in ("/pools/404", "/policies/404", "/centers/404", "/policies/1/pool-assignments/404", "/gateways/404"):
        with leostream.spec.sending_bad_requests():
            answer = leostream.http.get(f"{leostream.api}{path}")
        assert (answer.status_code, answer.content) == (404, b""), path
        assert "Content-Type" not in answer.headers, path
    assert leostream.http.delete(f"{leostream.api}/pools/1").status_code == 409
    assert leostream.http.delete(f"{leostream.api}/policies/1").status_code == 409


def test_paths_the_api_does_not_route_answer_404_with_leostreams_json_error_body(leostream):
    """Outside the document, so sent past the checker; the body is checked against the vendor's error shape."""
    sid = leostream.login()
    error_shape = {**leostream.spec.spec["components"]["schemas"]["ErrorShortBasicModel"],
                   "components": leostream.spec.spec["components"]}
    calls = [("GET", "/rest/v1/no/such", {"Authorization": f"Bearer {sid}"}), ("GET", "/rest/v1/desktops", {}),
             ("DELETE", "/rest/v1/centers", {"Authorization": f"Bearer {sid}"}), ("GET", "/", {})]
    for method, path, headers in calls:
        answer = requests.request(method, f"{leostream.url}{path}", headers=headers, timeout=5)
        assert answer.status_code == 404 and answer.headers["Content-Type"] == "application/json", path
        assert answer.json() == {"error_status": "NOT_FOUND", "error_message": f"No such API path: {method} {path}"}
        assert list(Draft202012Validator(error_shape).iter_errors(answer.json())) == [], path


def test_gateways_are_listed_added_and_read_as_the_document_describes(leostream):
    leostream.login()
    api, http = leostream.api, leostream.http
    assert http.get(f"{api}/gateways").json() == []

    added = http.post(f"{api}/gateways", json={"name": "gw-1", "address": "gw1.studio.example", "notes": "edge"})

    assert added.status_code == 201
    gateway = added.json()["stored_data"]
    assert http.get(f"{api}/gateways").json() == [{"id": gateway["id"], "name": "gw-1"}]
    assert http.get(f"{api}/gateways/{gateway['id']}").json() == gateway
    assert (gateway["address"], gateway["address_private"], gateway["use_src_ip"], gateway["online"]) == (
        "gw1.studio.example", "", 0, 1)
    assert http.post(f"{api}/gateways", json={"name": "gw-1", "address": "other"}).status_code == 409
    with leostream.spec.sending_bad_requests():
        no_address = http.post(f"{api}/gateways", json={"name": "gw-2"})
        bad_filtering = http.post(f"{api}/gateways", json={"name": "gw-2", "address": "gw2", "use_src_ip": 3})
    assert no_address.status_code == 400 and no_address.json()["missing_fields"] == ["address"]
    assert bad_filtering.status_code == 400 and bad_filtering.json()["errors"][0]["path"] == "/body/use_src_ip"
    leostream.spec.assert_clean()


def test_every_pool_definition_stays_within_the_vendors_enums(leostream):
    leostream.login()
    center = leostream.add_center()
    enums = {name: schema["enum"] for name, schema in leostream.spec.spec["components"]["schemas"][
        "PoolBasicModel"]["properties"]["pool_definition"]["properties"].items() if "enum" in schema}
    assert {"restrict_by", "pool_attribute_join", "vm_tag_join"} <= set(enums)
    created = [
        leostream.add_pool("by name", {"restrict_by": "A", "vm_tag_join": "O", "attributes": [
            {"vm_table_field": "name", "condition_type": "eq", "text_to_match": "vdi-VDI-1"}]}),
        leostream.add_pool("by center", {"restrict_by": "C", "server_ids": [center["id"]]}),
        leostream.add_pool("by hand", {"restrict_by": "H", "adhoc_vms": [{"id": 1000, "name": "vdi-VDI-1"}]}),
    ]
    for pool_id in [1, *created]:
        definition = leostream.pool(pool_id)["pool_definition"]
        for name, allowed in enums.items():
            assert definition.get(name, allowed[0]) in allowed, (pool_id, name, definition.get(name))
    wrong_values = [{"restrict_by": "C", "server_ids": [center["id"]], **value} for value in (
        {"vm_tag_join": "X"}, {"pool_attribute_join": ""}, {"never_rogue": 2}, {"restrict_by": ""})]
    wrong_values.append({"restrict_by": "H", "adhoc_vms": [1000]})  # desktops are objects {id, name}
    with leostream.spec.sending_bad_requests():
        refused = [leostream.http.post(f"{leostream.api}/pools", json={"name": "bad", "pool_definition": definition})
                   for definition in wrong_values]
    assert [r.status_code for r in refused] == [400] * 5
    assert [r.json()["errors"][0]["path"] for r in refused] == [
        "/body/pool_definition/vm_tag_join", "/body/pool_definition/pool_attribute_join",
        "/body/pool_definition/never_rogue", "/body/pool_definition/restrict_by", "/body/pool_definition/adhoc_vms"]
    leostream.spec.assert_clean()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=12),
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                             st.sampled_from(["name", "pool_definition", "restrict_by", "attributes", "server_ids",
                                              "adhoc_vms", "center_definition", "vc_auth_method", "vc_datacenter",
                                              "pool_id", "user_login", "is_local", "password", "policy_name",
                                              "parent_pool_id", "condition_type", "vm_table_field"]),
                             inner, max_size=5), max_leaves=14),
       target=st.sampled_from([("POST", "/pools"), ("PUT", "/pools/2"), ("POST", "/policies"),
                               ("PUT", "/policies/1"), ("POST", "/users"), ("POST", "/centers/amazon"),
                               ("POST", "/policies/1/pool-assignments"), ("POST", "/session/login")]))
def test_arbitrary_json_bodies_get_a_broker_answer_not_a_server_error(leostream, body, target):
    if "Authorization" not in leostream.http.headers:
        leostream.login()
        leostream.http.post(f"{leostream.api}/pools", json={"name": "seed", "pool_definition": {
            "restrict_by": "H", "adhoc_vms": []}})
    method, path = target
    with leostream.spec.sending_bad_requests():
        answer = leostream.http.request(method, f"{leostream.api}{path}", json=body)
    assert answer.status_code < 500, answer.text
    if answer.status_code >= 400 and answer.status_code != 404:
        assert {"error_status", "error_message"} <= set(answer.json())

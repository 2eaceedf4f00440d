"""An AWS center scan reads EC2 from moto (real HTTP, boto3) and places the desktops into pools by their filters;
the test-only sign-in hook assigns a desktop the way a user signing in through a Leostream client would."""

from __future__ import annotations

import requests

from tests.sandbox.leostream.conftest import REGION, LeostreamSandbox, clear_region, make_leostream
from tests.conftest import wait_until


def names(pool: dict) -> list[str]:
    return sorted(vm["name"] for vm in pool["vms_list"])


def test_scan_places_instances_into_pools_by_their_filters(leostream):
    one = leostream.launch("vdi-VDI-1", project="lighting")
    leostream.launch("vdi-VDI-2", project="layout")
    leostream.launch("render-node")
    leostream.login()
    center = leostream.add_center()
    by_name = leostream.add_pool("vdi-VDI-1", {"restrict_by": "A", "attributes": [
        {"vm_table_field": "name", "condition_type": "eq", "text_to_match": "vdi-VDI-1"}]})
    by_tag = leostream.add_pool("layout", {"restrict_by": "A", "attributes": [
        {"vm_table_field": "tag_filter", "condition_type": "eq", "text_to_match": "project=layout"}]})
    any_vdi = leostream.add_pool("all vdi", {"restrict_by": "A", "pool_attribute_join": "O", "attributes": [
        {"vm_table_field": "name", "condition_type": "bw", "text_to_match": "vdi-"},
        {"vm_table_field": "name", "condition_type": "eq", "text_to_match": "render-node"}]})
    whole_center = leostream.add_pool("center", {"restrict_by": "C", "server_ids": [center["id"]]})
    assert leostream.pool(by_name)["vms_list"] == []  # nothing is known before a scan

    leostream.scan(center["id"])

    assert names(leostream.pool(by_name)) == ["vdi-VDI-1"]
    assert names(leostream.pool(by_tag)) == ["vdi-VDI-2"]
    assert names(leostream.pool(any_vdi)) == ["render-node", "vdi-VDI-1", "vdi-VDI-2"]
    assert names(leostream.pool(whole_center)) == ["render-node", "vdi-VDI-1", "vdi-VDI-2"]
    vm = leostream.pool(by_name)["vms_list"][0]
    assert vm == {"id": vm["id"], "name": "vdi-VDI-1", "display_name": "vdi-VDI-1", "status": 22,
                  "hda_status": "", "out_of_service": 0, "user_id": 0}  # no Leostream agent on it
    desktops = {d["instance_id"]: d for d in requests.get(f"{leostream.url}/_sandbox/desktops", timeout=5).json()}
    assert desktops[one]["tags"]["project"] == "lighting" and desktops[one]["ip"]
    listed = {p["id"]: p for p in leostream.http.get(f"{leostream.api}/pools").json()}
    assert listed[1]["total_vm"] == 3 and listed[by_name]["available_vm"] == 1
    leostream.spec.assert_clean()


def test_rescan_follows_stopped_and_terminated_instances(leostream):
    stopped = leostream.launch("vdi-VDI-3")
    gone = leostream.launch("vdi-VDI-4")
    leostream.login()
    center = leostream.add_center()
    pool = leostream.add_pool("vdi", {"restrict_by": "A", "attributes": [
        {"vm_table_field": "name", "condition_type": "bw", "text_to_match": "vdi-"}]})
    leostream.scan(center["id"])
    assert names(leostream.pool(pool)) == ["vdi-VDI-3", "vdi-VDI-4"]
    leostream.app.extensions["leostream_broker"].report_agent(stopped)
    leostream.ec2().stop_instances(InstanceIds=[stopped])
    leostream.ec2().terminate_instances(InstanceIds=[gone])
    leostream.scan(center["id"])
    [vm] = leostream.pool(pool)["vms_list"]
    assert (vm["name"], vm["status"], vm["hda_status"]) == ("vdi-VDI-3", 23, "Stopped")
    stats = leostream.pool(pool)["pool_stats"]
    assert (stats["total_vm"], stats["total_vm_stopped"], stats["total_agent_running"]) == (1, 1, 0)


def test_sign_in_hook_assigns_a_desktop_from_the_users_policy(leostream):
    leostream.launch("vdi-VDI-5")
    leostream.login()
    center = leostream.add_center()
    leostream.scan(center["id"])
    pool = leostream.add_pool("vdi-VDI-5", {"restrict_by": "A", "attributes": [
        {"vm_table_field": "name", "condition_type": "eq", "text_to_match": "vdi-VDI-5"}]})
    policy = leostream.http.post(f"{leostream.api}/policies", json={"name": "vdi-VDI-5"}).json()["stored_data"]
    leostream.http.post(f"{leostream.api}/policies/{policy['id']}/pool-assignments", json={"pool_id": pool})
    user = leostream.http.post(f"{leostream.api}/users", json={
        "user_login": "alice", "name": "Alice", "is_local": 0, "auth_server": "studio.example",
        "policy_name": "vdi-VDI-5"}).json()["stored_data"]

    signed_in = requests.post(f"{leostream.url}/_sandbox/sign-in", json={"user_login": "alice"}, timeout=5)

    assert signed_in.status_code == 200 and signed_in.json()["desktop"]["name"] == "vdi-VDI-5"
    assert leostream.pool(pool)["vms_list"][0]["user_id"] == user["id"]
    # Logins are case-insensitive: Alice signing in as "ALICE" is the same user.
    again = requests.post(f"{leostream.url}/_sandbox/sign-in", json={"user_login": "ALICE"}, timeout=5).json()
    assert again["desktop"]["id"] == signed_in.json()["desktop"]["id"]
    assert leostream.http.get(f"{leostream.api}/pools").json()[1]["assigned_vm"] == 1
    nobody = requests.post(f"{leostream.url}/_sandbox/sign-in", json={"user_login": "mallory"}, timeout=5)
    assert nobody.status_code == 404
    assert requests.post(f"{leostream.url}/_sandbox/sign-out", json={"user_login": "alice"},
                         timeout=5).json() == {"released": 1}
    assert leostream.pool(pool)["vms_list"][0]["user_id"] == 0


def test_a_center_with_a_poll_interval_finds_new_instances_without_an_explicit_scan(leostream_spec, moto_endpoint):
    clear_region(moto_endpoint)
    with make_leostream(moto_endpoint, POLL_SCALE=0.001) as (url, _):  # 1 minute -> 60 ms
        http = requests.Session()
        sid = http.post(f"{url}/rest/v1/session/login", json={"user_login": "vdi-api",
                                                              "password": "sandbox-broker-password"}).json()["sid"]
        http.headers["Authorization"] = f"Bearer {sid}"
        http.post(f"{url}/rest/v1/centers/amazon", json={"center_definition": {
            "name": "polled", "type": "amazon", "vc_auth_method": "attached_role", "attached_role": "broker",
            "vc_datacenter": REGION, "poll_interval": 1}}).raise_for_status()
        LeostreamSandbox(url, None, http, leostream_spec, moto_endpoint).launch("vdi-VDI-6")
        found = wait_until(lambda: [vm for vm in http.get(f"{url}/rest/v1/pools/1").json()["vms_list"]
                                    if vm["name"] == "vdi-VDI-6"], timeout_s=15, message="the poller to find it")
        assert found[0]["status"] == 22


def test_a_center_whose_aws_endpoint_is_down_shows_offline(leostream_spec):
    with make_leostream("http://127.0.0.1:9") as (url, _):
        http = requests.Session()
        sid = http.post(f"{url}/rest/v1/session/login", json={"user_login": "vdi-api",
                                                              "password": "sandbox-broker-password"}).json()["sid"]
        http.headers["Authorization"] = f"Bearer {sid}"
        created = http.post(f"{url}/rest/v1/centers/amazon", json={"center_definition": {
            "name": "down", "type": "amazon", "vc_auth_method": "attached_role", "vc_datacenter": "us-east-1"}})
        assert created.status_code == 201
        assert (created.json()["stored_data"]["online"], created.json()["stored_data"]["status_label"]) == \
            (0, "Offline")

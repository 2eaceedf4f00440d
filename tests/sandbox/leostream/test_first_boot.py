"""The first-boot stand-in (moto runs no user data): for each instance tagged ``vdi:issue`` it writes the
bootstrap's ``vdi:bootstrap`` tags through moto's EC2 API and, when the boot succeeds, the broker reports the
desktop's agent running; ``/_sandbox/first-boot`` sets a ticket's next outcome. Broker traffic is checked against
the vendor's OpenAPI document by the ``leostream`` fixture."""

from __future__ import annotations

import requests

from sandbox.leostream.__main__ import build_app
from sandbox.leostream.first_boot import DEFAULT_CAUSE
from tests.conftest import wait_until
from tests.sandbox.leostream.conftest import LeostreamSandbox, clear_region, make_leostream


def expect(leostream: LeostreamSandbox, issue_key: str, outcome: str, **extra) -> requests.Response:
    return requests.post(f"{leostream.url}/_sandbox/first-boot", json={"issue_key": issue_key, "outcome": outcome,
                                                                       **extra}, timeout=5)


def first_boots(leostream: LeostreamSandbox) -> dict:
    answer = requests.get(f"{leostream.url}/_sandbox/first-boot", timeout=5)
    assert answer.status_code == 200
    return answer.json()


def bootstrap_ends(leostream: LeostreamSandbox, instance_id: str, outcome: str) -> dict[str, str]:
    """The instance's tags once its ``vdi:bootstrap`` tag says ``outcome``."""
    return wait_until(lambda: (tags := leostream.tags(instance_id)).get("vdi:bootstrap") == outcome and tags,
                      message=f"vdi:bootstrap={outcome} on {instance_id}")


def desktop_pool(leostream: LeostreamSandbox, issue_key: str) -> int:
    """A pool of the desktop's own, as the product makes one per desktop."""
    return leostream.add_pool(f"vdi-{issue_key}", {"restrict_by": "A", "attributes": [
        {"vm_table_field": "name", "condition_type": "eq", "text_to_match": f"vdi-{issue_key}"}]})


def broker_with_center(leostream: LeostreamSandbox) -> dict:
    leostream.login()
    return leostream.add_center()


def test_by_default_a_launched_desktop_boots_to_done_and_its_pool_counts_its_agent_running(leostream):
    center = broker_with_center(leostream)
    pool_id = desktop_pool(leostream, "VDI-12")

    instance_id = leostream.launch("vdi-VDI-12", vdi_issue="VDI-12")

    tags = bootstrap_ends(leostream, instance_id, "done")
    assert "vdi:bootstrap-cause" not in tags
    leostream.scan(center["id"])
    pool = leostream.pool(pool_id)
    assert [(vm["name"], vm["status"], vm["hda_status"]) for vm in pool["vms_list"]] == [("vdi-VDI-12", 22,
                                                                                          "Running")]
    assert (pool["pool_stats"]["total_vm_running"], pool["pool_stats"]["total_agent_running"]) == (1, 1)
    listed = {p["id"]: p for p in leostream.http.get(f"{leostream.api}/pools").json()}
    assert listed[pool_id]["total_agent_running"] == 1
    [boot] = first_boots(leostream)["instances"]
    assert (boot["instance_id"], boot["issue_key"], boot["outcome"]) == (instance_id, "VDI-12", "done")
    assert boot["played"]
    leostream.spec.assert_clean()


def test_a_failed_first_boot_tags_its_cause_and_the_desktop_is_listed_without_a_running_agent(leostream):
    center = broker_with_center(leostream)
    pool_id = desktop_pool(leostream, "VDI-13")
    assert expect(leostream, "VDI-13", "failed").status_code == 201
    assert expect(leostream, "VDI-14", "failed", cause="the display server did not start").status_code == 201

    failed = leostream.launch("vdi-VDI-13", vdi_issue="VDI-13")
    own_cause = leostream.launch("vdi-VDI-14", vdi_issue="VDI-14")

    assert bootstrap_ends(leostream, failed, "failed")["vdi:bootstrap-cause"] == DEFAULT_CAUSE
    assert bootstrap_ends(leostream, own_cause, "failed")["vdi:bootstrap-cause"] == "the display server did not start"
    leostream.scan(center["id"])
    pool = leostream.pool(pool_id)
    [vm] = pool["vms_list"]
    assert vm["name"] == "vdi-VDI-13" and vm["status"] == 22 and vm["hda_status"] != "Running"
    assert (pool["pool_stats"]["total_vm_running"], pool["pool_stats"]["total_agent_running"]) == (1, 0)
    leostream.spec.assert_clean()


def test_never_leaves_the_instance_untouched_while_other_desktops_boot(leostream):
    broker_with_center(leostream)
    expect(leostream, "VDI-15", "never")

    silent = leostream.launch("vdi-VDI-15", vdi_issue="VDI-15")
    booted = leostream.launch("vdi-VDI-16", vdi_issue="VDI-16")

    bootstrap_ends(leostream, booted, "done")
    wait_until(lambda: all(b["outcome"] != "done" or b.get("played") for b in first_boots(leostream)["instances"]),
               message="every boot seen to be played")
    assert not any(key.startswith("vdi:bootstrap") for key in leostream.tags(silent))
    boots = {b["instance_id"]: b for b in first_boots(leostream)["instances"]}
    assert boots[silent]["outcome"] == "never" and "played" not in boots[silent]
    assert leostream.app.extensions["leostream_broker"].agents == {booted}


def test_an_outcome_is_for_the_tickets_next_instance_only(leostream):
    broker_with_center(leostream)
    expect(leostream, "VDI-17", "failed")
    first = leostream.launch("vdi-VDI-17", vdi_issue="VDI-17")
    bootstrap_ends(leostream, first, "failed")
    assert first_boots(leostream)["pending"] == []
    leostream.ec2().terminate_instances(InstanceIds=[first])

    second = leostream.launch("vdi-VDI-17", vdi_issue="VDI-17")

    assert "vdi:bootstrap-cause" not in bootstrap_ends(leostream, second, "done")


def test_post_sets_get_lists_delete_clears_and_a_second_post_replaces_the_first(leostream):
    assert expect(leostream, "VDI-12", "failed").json() == {"issue_key": "VDI-12", "outcome": "failed"}
    expect(leostream, "VDI-13", "never")
    expect(leostream, "VDI-12", "done")

    listed = first_boots(leostream)
    assert listed["pending"] == [{"issue_key": "VDI-12", "outcome": "done"}, {"issue_key": "VDI-13",
                                                                             "outcome": "never"}]
    assert (listed["default"], listed["delay_s"], listed["instances"]) == ("done", 0.3, [])
    assert requests.delete(f"{leostream.url}/_sandbox/first-boot", timeout=5).status_code == 204
    assert first_boots(leostream)["pending"] == []


def test_bad_input_is_refused_with_400_and_a_clear_message_changing_nothing(leostream):
    expect(leostream, "VDI-12", "failed")
    url = f"{leostream.url}/_sandbox/first-boot"
    answers = {
        "not json": requests.post(url, data="{nope", headers={"Content-Type": "application/json"}, timeout=5),
        "a list": requests.post(url, json=[{"issue_key": "VDI-12", "outcome": "done"}], timeout=5),
        "no issue key": requests.post(url, json={"outcome": "done"}, timeout=5),
        "not an issue key": expect(leostream, "vdi-12", "done"),
        "unknown outcome": expect(leostream, "VDI-12", "maybe"),
        "no outcome": requests.post(url, json={"issue_key": "VDI-12"}, timeout=5),
        "cause without failure": expect(leostream, "VDI-12", "done", cause="why"),
        "empty cause": expect(leostream, "VDI-12", "failed", cause=" "),
        "unknown field": expect(leostream, "VDI-12", "done", instance_id="i-1"),
    }
    for what, answer in answers.items():
        assert answer.status_code == 400, what
        assert answer.json()["error_status"] == "BAD_DATA" and answer.json()["error_message"], what
    assert "done, failed, never" in answers["unknown outcome"].json()["error_message"]
    assert "instance_id" in answers["unknown field"].json()["error_message"]
    assert first_boots(leostream)["pending"] == [{"issue_key": "VDI-12", "outcome": "failed"}]


def test_instances_the_product_did_not_launch_or_that_booted_before_are_left_alone(leostream):
    broker_with_center(leostream)
    other = leostream.launch("render-node")
    rebooted = leostream.launch("vdi-VDI-18", vdi_issue="VDI-18", vdi_bootstrap="done")
    marker = leostream.launch("vdi-VDI-19", vdi_issue="VDI-19")

    bootstrap_ends(leostream, marker, "done")

    assert leostream.tags(other) == {"Name": "render-node"}
    assert [b["instance_id"] for b in first_boots(leostream)["instances"]] == [marker]
    assert rebooted not in leostream.app.extensions["leostream_broker"].agents


def test_until_the_first_boot_ends_the_desktop_shows_bootstrap_running_and_no_agent(leostream_spec, moto_endpoint):
    clear_region(moto_endpoint)
    leostream_spec.reset()
    with make_leostream(moto_endpoint, FIRST_BOOT_DELAY_S=600) as (url, app):
        leostream = LeostreamSandbox(url, app, leostream_spec.watch(requests.Session()), leostream_spec,
                                     moto_endpoint)
        center = broker_with_center(leostream)
        pool_id = desktop_pool(leostream, "VDI-20")
        instance_id = leostream.launch("vdi-VDI-20", vdi_issue="VDI-20")

        bootstrap_ends(leostream, instance_id, "running")
        leostream.scan(center["id"])

        pool = leostream.pool(pool_id)
        assert [vm["hda_status"] for vm in pool["vms_list"]] == [""]
        assert pool["pool_stats"]["total_agent_running"] == 0
    leostream_spec.assert_clean()


def test_an_agent_registering_after_the_scan_shows_at_once_and_one_before_it_shows_on_discovery(leostream):
    center = broker_with_center(leostream)
    expect(leostream, "VDI-21", "never")
    expect(leostream, "VDI-22", "never")
    scanned_first = leostream.launch("vdi-VDI-21", vdi_issue="VDI-21")
    broker = leostream.app.extensions["leostream_broker"]
    leostream.scan(center["id"])
    broker.report_agent(scanned_first)
    registered_first = leostream.launch("vdi-VDI-22", vdi_issue="VDI-22")
    broker.report_agent(registered_first)

    leostream.scan(center["id"])

    root = leostream.pool(1)
    assert {vm["name"]: vm["hda_status"] for vm in root["vms_list"]} == {"vdi-VDI-21": "Running",
                                                                        "vdi-VDI-22": "Running"}
    assert root["pool_stats"]["total_agent_running"] == 2
    leostream.spec.assert_clean()


def test_the_delay_and_polling_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("LEOSTREAM_PASSWORD", "sandbox-broker-password")
    monkeypatch.setenv("LEOSTREAM_SANDBOX_POLL_SCALE", "0")
    monkeypatch.setenv("LEOSTREAM_SANDBOX_FIRST_BOOT_DELAY_S", "60")
    monkeypatch.setenv("LEOSTREAM_SANDBOX_FIRST_BOOT_POLL_S", "0")
    first_boot = build_app().extensions["leostream_first_boot"]
    assert (first_boot.delay_s, first_boot.poll_s) == (60.0, 0.0)

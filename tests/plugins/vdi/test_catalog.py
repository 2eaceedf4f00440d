from pathlib import Path

import pytest
import yaml

from vdi.catalog import DEFAULT_CATALOG_PATH, RequestRejected, load_catalog
from vdi.request import parse_issue


def write_catalog(tmp_path, change) -> Path:
    data = yaml.safe_load(DEFAULT_CATALOG_PATH.read_text())
    change(data)
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def catalog():
    return load_catalog(DEFAULT_CATALOG_PATH)


@pytest.fixture
def request_(jira_issue, field_names, field_config):
    return parse_issue(jira_issue, field_config, field_names)


def test_shipped_catalog_loads(catalog):
    assert "standard" in catalog.bundles
    assert catalog.bundles["standard"].root_volume.size_gb >= 8


def test_request_within_guardrails_gets_its_bundle(catalog, request_):
    assert catalog.check(request_, user_desktops=0, in_flight=0).instance_type == "t3.large"
    assert catalog.resolve_os(request_) == "linux"


def test_bundle_not_offered_to_the_project_is_rejected_with_the_choices(catalog, request_):
    other = request_.model_copy(update={"bundle": "large"})
    with pytest.raises(RequestRejected, match="not offered to project VDI; choose one of: standard, gpu"):
        catalog.check(other, user_desktops=0, in_flight=0)


def test_project_without_rules_is_rejected(catalog, request_):
    with pytest.raises(RequestRejected, match="project OPS may not request desktops"):
        catalog.check(request_.model_copy(update={"project_key": "OPS"}), user_desktops=0, in_flight=0)


def test_user_at_the_desktop_limit_is_rejected(catalog, request_):
    with pytest.raises(RequestRejected, match="already has 2 desktop"):
        catalog.check(request_, user_desktops=2, in_flight=0)


def test_too_many_requests_in_flight_is_rejected(catalog, request_):
    with pytest.raises(RequestRejected, match="in progress"):
        catalog.check(request_, user_desktops=0, in_flight=catalog.limits.requests_in_flight)


def test_os_the_bundle_does_not_offer_is_rejected(catalog, request_):
    with pytest.raises(RequestRejected, match="offers linux, not 'windows'"):
        catalog.check(request_.model_copy(update={"bundle": "gpu", "os": "Windows"}),
                      user_desktops=0, in_flight=0)


def test_catalog_naming_an_unknown_bundle_for_a_project_is_invalid(tmp_path):
    path = write_catalog(tmp_path, lambda data: data["projects"]["VDI"]["bundles"].append("ghost"))
    with pytest.raises(ValueError, match="unknown bundles \\['ghost'\\]"):
        load_catalog(path)


def test_catalog_with_a_misspelled_key_is_invalid(tmp_path):
    path = write_catalog(tmp_path, lambda data: data["bundles"]["standard"].update(instance_typ="t3.small"))
    with pytest.raises(ValueError, match="instance_typ"):
        load_catalog(path)


def test_catalog_path_setting_chooses_the_file_and_the_shipped_one_is_the_default(tmp_path, monkeypatch):
    path = write_catalog(tmp_path, lambda data: data["limits"].update(desktops_per_user=7))
    monkeypatch.setenv("VDI_CATALOG_PATH", str(path))
    assert load_catalog().limits.desktops_per_user == 7
    monkeypatch.delenv("VDI_CATALOG_PATH")
    assert load_catalog() == load_catalog(DEFAULT_CATALOG_PATH)


def test_a_failed_requests_instance_is_terminated_unless_the_bundle_says_stop_or_keep(catalog, tmp_path):
    assert {bundle.on_failure for bundle in catalog.bundles.values()} == {"terminate"}

    def stop_standard_keep_gpu(data):
        data["bundles"]["standard"]["on_failure"] = "stop"
        data["bundles"]["gpu"]["on_failure"] = "keep"
        del data["bundles"]["large"]["on_failure"]

    loaded = load_catalog(write_catalog(tmp_path, stop_standard_keep_gpu))
    assert {name: b.on_failure for name, b in loaded.bundles.items()} == {
        "standard": "stop", "gpu": "keep", "large": "terminate"}


def test_an_unknown_on_failure_action_is_refused_when_the_catalog_loads(tmp_path):
    path = write_catalog(tmp_path, lambda data: data["bundles"]["gpu"].update(on_failure="hibernate"))
    with pytest.raises(ValueError, match=r"gpu\.on_failure[\s\S]*'terminate', 'stop' or 'keep'"):
        load_catalog(path)


def test_dcv_on_linux_is_refused_when_the_catalog_loads_since_the_bootstrap_has_no_dcv_packages(tmp_path):
    path = write_catalog(tmp_path, lambda data: data["bundles"]["gpu"]["leostream"].update(display_protocol="dcv"))
    with pytest.raises(ValueError, match="display_protocol 'dcv' cannot be installed on linux by the desktop "
                                         r"bootstrap \(it can: none, rdp\)"):
        load_catalog(path)


def test_dcv_on_a_windows_only_bundle_loads(tmp_path):
    def windows_dcv(data):
        data["bundles"]["gpu"]["images"] = {"windows": {"us-east-1": "ami-03cf127a"}}
        data["bundles"]["gpu"]["default_os"] = "windows"
        data["bundles"]["gpu"]["leostream"]["display_protocol"] = "dcv"

    assert load_catalog(write_catalog(tmp_path, windows_dcv)).bundles["gpu"].leostream.display_protocol == "dcv"


def test_a_display_protocol_no_bootstrap_knows_is_refused(tmp_path):
    path = write_catalog(tmp_path, lambda data: data["bundles"]["standard"]["leostream"].update(display_protocol="vnc"))
    with pytest.raises(ValueError, match="display_protocol 'vnc' cannot be installed"):
        load_catalog(path)


def test_an_os_the_bootstrap_does_not_know_is_refused(tmp_path):
    path = write_catalog(tmp_path, lambda data: data["bundles"]["standard"]["images"].update(
        macos={"us-east-1": "ami-1e749f67"}))
    with pytest.raises(ValueError, match="linux and windows, not 'macos'"):
        load_catalog(path)

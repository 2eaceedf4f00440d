import pytest
import yaml

from vdi.catalog import DEFAULT_CATALOG_PATH, RequestRejected, load_catalog
from vdi.request import parse_issue


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
    data = yaml.safe_load(DEFAULT_CATALOG_PATH.read_text())
    data["projects"]["VDI"]["bundles"].append("ghost")
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match="unknown bundles \\['ghost'\\]"):
        load_catalog(path)


def test_catalog_with_a_misspelled_key_is_invalid(tmp_path):
    data = yaml.safe_load(DEFAULT_CATALOG_PATH.read_text())
    data["bundles"]["standard"]["instance_typ"] = "t3.small"
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match="instance_typ"):
        load_catalog(path)


def test_catalog_path_setting_chooses_the_file_and_the_shipped_one_is_the_default(tmp_path, monkeypatch):
    data = yaml.safe_load(DEFAULT_CATALOG_PATH.read_text())
    data["limits"]["desktops_per_user"] = 7
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("VDI_CATALOG_PATH", str(path))
    assert load_catalog().limits.desktops_per_user == 7
    monkeypatch.delenv("VDI_CATALOG_PATH")
    assert load_catalog() == load_catalog(DEFAULT_CATALOG_PATH)

import pytest

from dataclasses import replace

from vdi.request import JiraFieldConfig, RequestInvalid, parse_issue, request_id_for


def test_parses_custom_fields_found_by_name(jira_issue, field_names, field_config):
    request = parse_issue(jira_issue, field_config, field_names)
    assert request.issue_key == "VDI-12"
    assert request.project_key == "VDI"
    assert request.bundle == "standard"
    assert request.user.login == "ada@studio.example"
    assert request.user.display_name == "Ada Artist"
    assert request.status == "Approved"
    assert request.os is None


def test_custom_fields_may_be_configured_by_id(jira_issue, field_config):
    config = replace(field_config, bundle_field="customfield_10050", user_field="customfield_10051")
    assert parse_issue(jira_issue, config).bundle == "standard"


def test_status_may_be_a_plain_string(jira_issue, field_names, field_config):
    jira_issue["fields"]["status"] = "Approved"
    assert parse_issue(jira_issue, field_config, field_names).status == "Approved"


def test_desktop_user_falls_back_to_the_reporter(jira_issue, field_names, field_config):
    jira_issue["fields"]["customfield_10051"] = None
    assert parse_issue(jira_issue, field_config, field_names).user.login == "rita@studio.example"


def test_cloud_user_without_email_uses_the_account_id(jira_issue, field_names, field_config):
    jira_issue["fields"]["customfield_10051"] = {"accountId": "acc-ada", "displayName": "Ada Artist"}
    assert parse_issue(jira_issue, field_config, field_names).user.login == "acc-ada"


def test_missing_fields_are_reported_by_name(jira_issue, field_names, field_config):
    jira_issue["fields"]["customfield_10050"] = None
    jira_issue["fields"]["customfield_10051"] = None
    del jira_issue["fields"]["reporter"]
    del jira_issue["fields"]["status"]
    with pytest.raises(RequestInvalid) as raised:
        parse_issue(jira_issue, field_config, field_names)
    assert raised.value.missing == ["Desktop bundle", "Desktop user (or reporter)", "status"]
    assert "missing Desktop bundle, Desktop user (or reporter), status" in str(raised.value)


def test_a_bundle_name_with_shell_characters_is_refused(jira_issue, field_names, field_config):
    jira_issue["fields"]["customfield_10050"] = {"value": "standard; rm -rf /"}
    with pytest.raises(RequestInvalid, match="bundle"):
        parse_issue(jira_issue, field_config, field_names)


@pytest.mark.parametrize("key", [None, "", "vdi-1", "VDI-0", "VDI", 12])
def test_a_malformed_issue_key_is_refused(jira_issue, field_config, key):
    jira_issue["key"] = key
    with pytest.raises(RequestInvalid, match="not a Jira issue key"):
        parse_issue(jira_issue, field_config)


def test_request_id_is_stable_per_ticket_and_differs_between_tickets(jira_issue, field_names, field_config):
    request = parse_issue(jira_issue, field_config, field_names)
    assert request.request_id == request_id_for("VDI-12")
    assert request_id_for("VDI-12") != request_id_for("VDI-13")


def test_field_config_reads_the_settings_with_their_defaults(monkeypatch):
    monkeypatch.setenv("VDI_JIRA_BUNDLE_FIELD", "customfield_1")
    monkeypatch.setenv("VDI_JIRA_TRIGGER_STATUS", "Go")
    monkeypatch.delenv("VDI_JIRA_USER_FIELD", raising=False)
    config = JiraFieldConfig.from_env()
    assert (config.bundle_field, config.trigger_status, config.user_field) == ("customfield_1", "Go", "Desktop user")

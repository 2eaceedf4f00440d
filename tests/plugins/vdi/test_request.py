import pytest

from dataclasses import replace

from vdi.identity import login_lookup
from vdi.request import JiraFieldConfig, RequestInvalid, parse_issue, request_id_for
from vdi.settings import load

LOGIN_FIELD = "customfield_10060"


@pytest.fixture
def hidden_email(jira_issue, field_names) -> dict:
    """The Desktop user as Jira Cloud shows most users: no email; the ticket has a Desktop login field."""
    jira_issue["fields"]["customfield_10051"] = {"accountId": "acc-ada", "displayName": "Ada Artist"}
    jira_issue["fields"][LOGIN_FIELD] = None
    field_names["Desktop login"] = LOGIN_FIELD
    return jira_issue


def file_lookup(tmp_path, text: str):
    path = tmp_path / "logins.yaml"
    path.write_text(text)
    return login_lookup(None, load({"VDI_LOGIN_SOURCE": "file", "VDI_LOGIN_MAP_PATH": str(path)}))


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


def test_a_login_is_one_user_whatever_its_case(jira_issue, field_names, field_config):
    jira_issue["fields"]["customfield_10051"]["emailAddress"] = " Ada@Studio.Example "
    assert parse_issue(jira_issue, field_config, field_names).user.login == "ada@studio.example"


def test_a_hidden_email_takes_the_login_from_the_tickets_desktop_login(hidden_email, field_names, field_config):
    hidden_email["fields"][LOGIN_FIELD] = "ADA.Artist"
    user = parse_issue(hidden_email, field_config, field_names).user
    assert (user.login, user.display_name, user.account_id) == ("ada.artist", "Ada Artist", "acc-ada")


def test_the_email_jira_shows_wins_over_the_desktop_login(jira_issue, field_names, field_config):
    jira_issue["fields"][LOGIN_FIELD] = "someone-else"
    field_names["Desktop login"] = LOGIN_FIELD
    assert parse_issue(jira_issue, field_config, field_names).user.login == "ada@studio.example"


def test_a_hidden_email_without_a_desktop_login_is_refused_saying_what_to_set(hidden_email, field_names,
                                                                            field_config):
    with pytest.raises(RequestInvalid) as raised:
        parse_issue(hidden_email, field_config, field_names)
    assert raised.value.problems == ["Jira hides the email of Ada Artist; set their Desktop login on the ticket"]
    assert "acc-ada" not in str(raised.value)


def test_a_hidden_email_takes_the_login_from_the_login_map(hidden_email, field_names, tmp_path):
    config = JiraFieldConfig.from_env({"VDI_LOGIN_SOURCE": "file"})
    lookup = file_lookup(tmp_path, "acc-ada: ada.artist\nacc-bob: bob\n")
    assert parse_issue(hidden_email, config, field_names, lookup).user.login == "ada.artist"
    hidden_email["fields"][LOGIN_FIELD] = "ignored"  # the field is not the configured source
    assert parse_issue(hidden_email, config, field_names, lookup).user.login == "ada.artist"
    with pytest.raises(RequestInvalid, match="add their Jira account to VDI Studios' login map"):
        parse_issue(hidden_email, config, field_names, file_lookup(tmp_path, "acc-bob: bob\n"))


def test_an_account_id_is_never_taken_for_a_login(hidden_email, field_names, tmp_path):
    config = JiraFieldConfig.from_env({"VDI_LOGIN_SOURCE": "file"})
    with pytest.raises(RequestInvalid, match="is their Atlassian account id"):
        parse_issue(hidden_email, config, field_names, file_lookup(tmp_path, "acc-ada: ACC-ADA\n"))


def test_with_no_login_source_a_hidden_email_is_refused(hidden_email, field_names):
    config = JiraFieldConfig.from_env({"VDI_LOGIN_SOURCE": "none"})
    hidden_email["fields"][LOGIN_FIELD] = "ada.artist"
    with pytest.raises(RequestInvalid, match="^VDI-12: Jira hides the email of Ada Artist; the platform team must"):
        parse_issue(hidden_email, config, field_names)


def test_a_login_longer_than_leostream_takes_is_refused(hidden_email, field_names, field_config):
    hidden_email["fields"][LOGIN_FIELD] = "a" * 65
    with pytest.raises(RequestInvalid, match="login"):
        parse_issue(hidden_email, field_config, field_names)


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
    assert config.login_field == "Desktop login"


@pytest.mark.parametrize(("source", "login_field"), [("field", "Login"), ("property", None), ("file", None),
                                                     ("none", None), (" Field ", "Login")])
def test_field_config_reads_the_login_field_only_for_the_field_source(source, login_field):
    environ = {"VDI_LOGIN_SOURCE": source, "VDI_JIRA_LOGIN_FIELD": "Login"}
    assert JiraFieldConfig.from_env(environ).login_field == login_field


def test_an_unknown_login_source_is_refused_naming_its_variable():
    with pytest.raises(ValueError, match="VDI_LOGIN_SOURCE='email' is not one of field, property, file, none"):
        JiraFieldConfig.from_env({"VDI_LOGIN_SOURCE": "email"})

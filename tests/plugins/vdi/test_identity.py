"""``vdi.identity``: injective Leostream names from logins, and the Leostream login of a Jira user whose email
Jira hides, from each configured source, against the Jira sandbox (whose Dana hides her email) over HTTP."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.sandbox.jira.conftest import ALICE, API_TOKEN, API_USER, DANA, DESKTOP_LOGIN
from vdi.identity import POLICY_NAME_MAX, login_key, login_lookup, policy_name_for, read_login_map
from vdi.request import JiraFieldConfig, RequestInvalid, parse_issue
from vdi.settings import load

LOGINS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=64)
# Few letters, several of them unsafe in a name or equal after case folding: logins that look alike.
LOOKALIKES = st.text("aAsSß+-_@. é", min_size=1, max_size=5)


@pytest.fixture
def ticket(jira, monkeypatch):
    """``JiraTicket`` from the ``jira_default`` connection, its traffic checked against Jira's document."""
    from vdi.jira import JiraTicket

    monkeypatch.setenv("AIRFLOW_CONN_JIRA_DEFAULT", json.dumps({
        "conn_type": "jira", "host": jira.url, "login": API_USER, "password": API_TOKEN}))
    client = JiraTicket.from_connection()
    jira.spec.watch(client.client.session)
    return client


def settings(**environ: str):
    return load({f"VDI_{name.upper()}": value for name, value in environ.items()})


# --- names ----------------------------------------------------------------------------------------------------
def test_logins_that_read_alike_once_sanitized_get_different_policies():
    plus, dash = policy_name_for("jane+vdi@studio.example"), policy_name_for("jane-vdi@studio.example")
    assert plus != dash
    assert plus.startswith("vdi-user-jane-vdi@studio.example-") and dash.startswith("vdi-user-jane-vdi@studio.example-")


def test_a_login_in_any_case_is_one_policy():
    assert policy_name_for("Jane@Studio.Example") == policy_name_for("jane@studio.example ")
    assert login_key("JANE@X") == login_key("jane@x")


@given(LOOKALIKES | LOGINS, LOOKALIKES | LOGINS)
def test_policy_names_are_equal_exactly_when_the_logins_are_one_user(first, second):
    assert (policy_name_for(first) == policy_name_for(second)) == (login_key(first) == login_key(second))


@given(LOGINS)
def test_a_policy_name_fits_leostreams_limit_and_keeps_safe_characters(login):
    name = policy_name_for(login)
    assert len(name) <= POLICY_NAME_MAX
    assert name.isascii() and not any(c.isspace() for c in name)


# --- login sources ---------------------------------------------------------------------------------------------
def test_the_field_and_none_sources_need_no_lookup():
    assert login_lookup(None, settings(login_source="field")) is None
    assert login_lookup(None, settings(login_source="none")) is None


def test_the_property_source_reads_the_jira_user_property(jira, ticket):
    lookup = login_lookup(ticket, settings(login_source="property", jira_login_property="studio-login"))
    assert lookup(DANA) is None
    url = f"{jira.url}/rest/api/2/user/properties/studio-login"
    jira.http.put(url, params={"accountId": DANA}, json="dana.designer").raise_for_status()
    jira.http.put(url, params={"accountId": ALICE}, json={"login": "alice.a"}).raise_for_status()
    assert (lookup(DANA), lookup(ALICE)) == ("dana.designer", "alice.a")
    jira.spec.assert_clean()


def test_the_file_source_reads_yaml_or_json_once(tmp_path):
    path = tmp_path / "logins.json"
    path.write_text(json.dumps({DANA: "dana.designer"}))
    lookup = login_lookup(None, settings(login_source="file", login_map_path=str(path)))
    path.write_text(json.dumps({DANA: "changed"}))
    assert (lookup(DANA), lookup(ALICE)) == ("dana.designer", None)
    path.write_text(f"'{DANA}': dana\n# a comment\n")
    assert read_login_map(str(path)) == {DANA: "dana"}


@pytest.mark.parametrize(("content", "problem"), [
    (None, "VDI_LOGIN_MAP_PATH"), ("absent", "cannot read the login map"), ("- a list\n", "must map accountIds"),
    ("acc: [not, text]\n", "must map accountIds"), ("{unclosed: \n", "cannot read the login map")])
def test_a_login_map_that_cannot_serve_is_refused_by_name(tmp_path, content, problem):
    path = tmp_path / "logins.yaml"
    if content not in (None, "absent"):
        path.write_text(content)
    with pytest.raises(ValueError, match=problem):
        login_lookup(None, settings(login_source="file", login_map_path=None if content is None else str(path)))


# --- a ticket for a user whose email Jira hides, read from the sandbox ------------------------------------------
@pytest.mark.parametrize("source", ["field", "property", "file", "none"])
def test_a_hidden_email_is_mapped_by_the_configured_source_or_refused(jira, ticket, tmp_path, source):
    login_map = tmp_path / "logins.yaml"
    login_map.write_text(f"'{DANA}': dana.from-file\n")
    jira.http.put(f"{jira.url}/rest/api/2/user/properties/vdi-desktop-login", params={"accountId": DANA},
                  json="dana.from-property").raise_for_status()
    key = jira.create_request(user=DANA, **{DESKTOP_LOGIN: "Dana.From-Field"})
    issue = ticket.issue(key)
    assert "emailAddress" not in issue["fields"]["customfield_10051"]
    environ = {"VDI_LOGIN_SOURCE": source, "VDI_LOGIN_MAP_PATH": str(login_map)}
    config = JiraFieldConfig.from_env(environ)
    lookup = login_lookup(ticket, load(environ))
    if source == "none":
        with pytest.raises(RequestInvalid, match="Jira hides the email of Dana Designer"):
            parse_issue(issue, config, ticket.field_names(), lookup)
        return
    user = parse_issue(issue, config, ticket.field_names(), lookup).user
    assert (user.login, user.account_id) == (f"dana.from-{source}", DANA)
    jira.spec.assert_clean()


def test_a_shown_email_is_the_login_whatever_the_source(jira, ticket):
    key = jira.create_request(user=ALICE, **{DESKTOP_LOGIN: "not-alice"})
    lookup = login_lookup(ticket, settings(login_source="property"))
    request = parse_issue(ticket.issue(key), JiraFieldConfig.from_env({}), ticket.field_names(), lookup)
    assert request.user.login == "alice@studio.example"

"""Users in the Jira sandbox as Jira Cloud shows them: a profile that hides its email hides it everywhere a user
appears, user properties, and what the Desktop Request workflow and screen give VDI Studios for identities and
retries. The ``jira`` fixture checks every call against Jira's OpenAPI document."""

from __future__ import annotations

from tests.conftest import wait_until
from tests.sandbox.jira.conftest import ALICE, API_USER, APPROVE, DANA, DESKTOP_LOGIN, MARK_FAILED, RETRY
from tests.sandbox.jira.test_webhooks import receiver, register  # noqa: F401


def users_shown(node) -> list[dict]:
    """Every user object in a JSON body (anything with an accountId)."""
    if isinstance(node, list):
        return [user for item in node for user in users_shown(item)]
    if not isinstance(node, dict):
        return []
    found = [node] if "accountId" in node else []
    return found + [user for value in node.values() for user in users_shown(value)]


def test_a_hidden_email_is_left_out_of_issues_searches_and_users_while_shown_ones_stay(jira):
    key = jira.create_request(user=DANA)
    jira.http.put(f"{jira.url}/rest/api/2/issue/{key}", json={"fields": {"reporter": {"accountId": DANA}}})
    bodies = [
        jira.http.get(f"{jira.url}/rest/api/2/issue/{key}").json(),
        jira.http.get(f"{jira.url}/rest/api/3/issue/{key}", params={"expand": "changelog"}).json(),
        jira.http.get(f"{jira.url}/rest/api/2/search", params={"jql": f"key = {key}", "fields": "*all"}).json(),
        jira.http.get(f"{jira.url}/rest/api/2/user", params={"accountId": DANA}).json(),
        jira.http.get(f"{jira.url}/rest/api/3/user/search", params={"query": "dana"}).json(),
    ]
    danas = [user for body in bodies for user in users_shown(body) if user["accountId"] == DANA]
    assert len(danas) >= 6 and all("emailAddress" not in user and user["displayName"] == "Dana Designer"
                                   for user in danas)
    alice = jira.http.get(f"{jira.url}/rest/api/2/user", params={"accountId": ALICE}).json()
    assert alice["emailAddress"] == "alice@studio.example"
    assert jira.http.get(f"{jira.url}/rest/api/2/myself").json()["emailAddress"] == API_USER


def test_user_search_finds_a_hidden_email_by_name_only(jira):
    def found(**params) -> list[str]:
        return [u["accountId"] for u in jira.http.get(f"{jira.url}/rest/api/2/user/search", params=params).json()]

    assert found(query="Dana") == [DANA] and found(query="des") == [DANA]
    assert found(query="dana@studio") == []
    assert found(query="alice@studio") == [ALICE]
    assert found(accountId=DANA) == [DANA]
    neither = jira.http.get(f"{jira.url}/rest/api/2/user/search")
    assert neither.status_code == 400 and neither.json()["errorMessages"]
    assert jira.http.get(f"{jira.url}/rest/api/2/user", params={"accountId": "nobody"}).status_code == 404


def test_webhook_payloads_hide_the_email_too(jira, receiver):
    register(jira, receiver.url)
    jira.create_request(user=DANA)
    [delivery] = wait_until(lambda: receiver.deliveries("jira:issue_created"), message="issue_created delivery")
    desktop_user = delivery.json["issue"]["fields"]["customfield_10051"]
    assert desktop_user["accountId"] == DANA and "emailAddress" not in desktop_user
    assert delivery.json["issue"]["fields"]["reporter"]["emailAddress"] == API_USER


def test_user_properties_are_written_read_listed_and_deleted_per_account(jira):
    url = f"{jira.url}/rest/api/2/user/properties/vdi-desktop-login"
    assert jira.http.get(url, params={"accountId": DANA}).status_code == 404
    assert jira.http.put(url, params={"accountId": DANA}, json="dana").status_code == 201
    assert jira.http.put(url, params={"accountId": DANA}, json="dana.designer").status_code == 200
    assert jira.http.get(url, params={"accountId": DANA}).json() == {"key": "vdi-desktop-login",
                                                                    "value": "dana.designer"}
    assert jira.http.get(url, params={"accountId": ALICE}).status_code == 404
    keys = jira.http.get(f"{jira.url}/rest/api/3/user/properties", params={"accountId": DANA}).json()["keys"]
    assert [k["key"] for k in keys] == ["vdi-desktop-login"] and keys[0]["self"].endswith(f"accountId={DANA}")
    assert jira.http.delete(url, params={"accountId": DANA}).status_code == 204
    assert jira.http.get(url, params={"accountId": DANA}).status_code == 404
    assert jira.http.delete(url, params={"accountId": DANA}).status_code == 404


def test_user_properties_answer_jiras_errors(jira):
    url = f"{jira.url}/rest/api/2/user/properties/vdi-desktop-login"
    answers = {
        "no account": jira.http.get(url),
        "unknown account": jira.http.put(url, params={"accountId": "nobody"}, json="x"),
        "too big": jira.http.put(url, params={"accountId": DANA}, json="x" * 33000),
        "key too long": jira.http.put(f"{url}{'x' * 260}", params={"accountId": DANA}, json="x"),
    }
    assert {name: a.status_code for name, a in answers.items()} == {
        "no account": 400, "unknown account": 404, "too big": 400, "key too long": 400}
    assert all(set(a.json()) == {"errorMessages", "errors"} for a in answers.values())


def test_desktop_requests_carry_a_desktop_login_text_field(jira):
    fields = {f["name"]: f for f in jira.http.get(f"{jira.url}/rest/api/2/field").json()}
    assert fields["Desktop Login"]["id"] == DESKTOP_LOGIN and fields["Desktop Login"]["schema"]["type"] == "string"
    key = jira.create_request(user=DANA, **{DESKTOP_LOGIN: "dana"})
    assert jira.http.get(f"{jira.url}/rest/api/2/issue/{key}").json()["fields"][DESKTOP_LOGIN] == "dana"
    edited = jira.http.put(f"{jira.url}/rest/api/2/issue/{key}", json={"fields": {DESKTOP_LOGIN: "dana.d"}})
    assert edited.status_code == 204
    history = jira.http.get(f"{jira.url}/rest/api/2/issue/{key}", params={"expand": "changelog"}).json()
    [item] = history["changelog"]["histories"][0]["items"]
    assert (item["field"], item["fromString"], item["toString"]) == ("Desktop Login", "dana", "dana.d")
    with jira.spec.sending_bad_requests():
        refused = [jira.http.put(f"{jira.url}/rest/api/2/issue/{key}", json={"fields": {DESKTOP_LOGIN: value}})
                   for value in (42, "x" * 256)]
    assert [r.status_code for r in refused] == [400, 400]
    assert all(DESKTOP_LOGIN in r.json()["errors"] for r in refused)


def test_a_failed_request_is_retried_back_to_approved(jira):
    key = jira.create_request()

    def offered() -> dict[str, str]:
        listed = jira.http.get(f"{jira.url}/rest/api/2/issue/{key}/transitions").json()["transitions"]
        return {t["name"]: t["id"] for t in listed}

    jira.transition(key, APPROVE)
    jira.transition(key, MARK_FAILED)
    assert offered() == {"Start Provisioning": "21", "Retry": RETRY}
    jira.transition(key, RETRY)
    issue = jira.http.get(f"{jira.url}/rest/api/2/issue/{key}", params={"expand": "changelog"}).json()
    assert issue["fields"]["status"]["name"] == "Approved"
    assert [(i["fromString"], i["toString"]) for i in issue["changelog"]["histories"][0]["items"]] == [
        ("Failed", "Approved")]
    assert offered() == {"Start Provisioning": "21", "Mark Failed": MARK_FAILED}

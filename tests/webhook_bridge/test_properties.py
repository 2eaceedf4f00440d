"""Property-based tests over headers and bodies, against a real PostgreSQL.

While the database is up no input yields a 5xx, and nothing unsigned or wrongly signed is ever recorded
(so nothing of it can be triggered: the relay only reads recorded rows).
"""

import json
import time

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.webhook_bridge.conftest import SECRET
from webhook_bridge.signature import sign

HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=80)
CONTENT_TYPES = st.sampled_from(["application/json", "application/json; charset=UTF-8", "APPLICATION/JSON",
                                 "text/plain", "application/x-www-form-urlencoded", ""]) | HEADER_TEXT
JSON_SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
                | st.text(alphabet=st.characters(exclude_categories=())))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(alphabet=st.characters(exclude_categories=()), max_size=10), inner,
                                                           max_size=4), max_leaves=20)


@st.composite
def jira_like_bodies(draw) -> bytes:
    now = int(time.time() * 1000)
    payload = {
        "timestamp": draw(st.sampled_from([now, now - 90_000_000, now + 900_000]) | JSON_SCALARS),
        "webhookEvent": draw(st.sampled_from(["jira:issue_created", "jira:issue_updated"]) | JSON_SCALARS),
        "issue": draw(st.fixed_dictionaries({"key": st.sampled_from(["VDI-1", "X-99"]) | JSON_VALUES,
                                             "fields": JSON_VALUES}) | JSON_VALUES),
    }
    payload.update(draw(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3)))
    return json.dumps(payload).encode()


BODIES = st.binary(max_size=512) | JSON_VALUES.map(lambda v: json.dumps(v).encode()) | jira_like_bodies()


def wrong_signatures(body_strategy=BODIES):
    return st.one_of(
        st.none(),
        HEADER_TEXT,
        st.text(alphabet="0123456789abcdef", min_size=64, max_size=64).map(lambda h: f"sha256={h}"),
        st.sampled_from(["sha1", "SHA256", "sha512", "md5", ""]).map(lambda m: f"{m}=" + "0" * 64),
    )


def count_rows(url) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM deliveries").fetchone()[0]


PROPERTY_SETTINGS = settings(max_examples=150, deadline=None,
                             suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(body=BODIES, content_type=CONTENT_TYPES, signature=wrong_signatures(), identifier=st.none() | HEADER_TEXT,
       other_secret=st.booleans())
def test_unsigned_or_wrongly_signed_input_is_never_recorded(client, app_database_url, body, content_type, signature,
                                                             identifier, other_secret):
    headers = {"Content-Type": content_type}
    if other_secret:
        signature = sign("not-the-secret", body)
    if signature is not None:
        headers["X-Hub-Signature"] = signature
    if identifier is not None:
        headers["X-Atlassian-Webhook-Identifier"] = identifier
    answer = client.post("/webhooks/jira", data=body, headers=headers)
    assert answer.status_code in (401, 415)
    assert count_rows(app_database_url) == 0


@PROPERTY_SETTINGS
@given(body=BODIES, content_type=st.sampled_from(["application/json", "application/json; charset=UTF-8"]),
       identifier=st.none() | HEADER_TEXT, retry=st.none() | HEADER_TEXT)
def test_signed_input_never_yields_a_5xx_while_the_database_is_up(client, app_database_url, body, content_type,
                                                                   identifier, retry):
    headers = {"Content-Type": content_type, "X-Hub-Signature": sign(SECRET, body)}
    if identifier is not None:
        headers["X-Atlassian-Webhook-Identifier"] = identifier
    if retry is not None:
        headers["X-Atlassian-Webhook-Retry"] = retry
    before = count_rows(app_database_url)
    answer = client.post("/webhooks/jira", data=body, headers=headers)
    assert answer.status_code in (200, 202, 400), answer.get_data(as_text=True)
    recorded = count_rows(app_database_url) - before
    if answer.status_code == 400:
        assert recorded == 0
    elif answer.json["status"] == "duplicate":
        assert recorded == 0
    else:
        assert recorded == 1


@PROPERTY_SETTINGS
@given(body=BODIES, headers=st.dictionaries(st.sampled_from(
    ["Content-Type", "X-Hub-Signature", "x-hub-signature", "X-Atlassian-Webhook-Identifier", "Content-Encoding",
     "Transfer-Encoding-Hint", "X-Atlassian-Webhook-Flow", "Authorization"]), HEADER_TEXT, max_size=6))
def test_arbitrary_headers_never_yield_a_5xx(client, app_database_url, body, headers):
    answer = client.post("/webhooks/jira", data=body, headers=headers)
    assert answer.status_code < 500
    assert answer.status_code in (401, 415)
    assert count_rows(app_database_url) == 0

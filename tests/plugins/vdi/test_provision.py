import pytest

from vdi.provision import broker_address, readable_cause


@pytest.mark.parametrize("message, secret", [
    ("connect to postgresql://vdi:hunter2pass@db:5432/vdi failed", "hunter2pass"),
    ("401 for header Authorization: Bearer eyJhbGciOi.secret.token", "eyJhbGciOi.secret.token"),
    ("login refused: password=s3cr3t-value", "s3cr3t-value"),
    ('body {"sid": "abcdef123456"} rejected', "abcdef123456"),
])
def test_readable_cause_hides_secret_looking_values(message, secret):
    cause = readable_cause(RuntimeError(message))
    assert secret not in cause
    assert cause.startswith("RuntimeError: ")


def test_readable_cause_is_one_bounded_line():
    cause = readable_cause(ValueError("line one\nline two\n" + "x" * 1000))
    assert "\n" not in cause
    assert len(cause) <= len("ValueError: ") + 300


def test_readable_cause_names_the_error_type_when_the_message_is_empty():
    assert readable_cause(TimeoutError()) == "TimeoutError: TimeoutError"


def test_broker_address_drops_the_scheme():
    assert broker_address("https://leostream.studio.example/") == "leostream.studio.example"

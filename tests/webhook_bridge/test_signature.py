from webhook_bridge.signature import sign, verify

ATLASSIAN_SECRET = "It's a Secret to Everybody"
ATLASSIAN_BODY = b"Hello World!"
ATLASSIAN_SIGNATURE = "sha256=a4771c39fbe90f317c7824e83ddef3caae9cb3d976c214ace1f2937e133263c9"


def test_atlassian_published_vector():
    assert sign(ATLASSIAN_SECRET, ATLASSIAN_BODY) == ATLASSIAN_SIGNATURE
    assert verify(ATLASSIAN_SIGNATURE, ATLASSIAN_BODY, [ATLASSIAN_SECRET])


def test_upper_case_hex_is_the_same_signature():
    method, digest = ATLASSIAN_SIGNATURE.split("=")
    assert verify(f"{method}={digest.upper()}", ATLASSIAN_BODY, [ATLASSIAN_SECRET])


def test_other_methods_and_shapes_are_rejected():
    digest = ATLASSIAN_SIGNATURE.split("=", 1)[1]
    for value in (f"sha1={digest}", f"SHA256={digest}", f"sha512={digest}", digest, f"sha256:{digest}",
                  "sha256=", "", None, f"sha256={digest[:-1]}", f"sha256={digest}00"):
        assert not verify(value, ATLASSIAN_BODY, [ATLASSIAN_SECRET]), value


def test_any_configured_secret_verifies_for_rotation():
    secrets = ["old-secret", ATLASSIAN_SECRET]
    assert verify(ATLASSIAN_SIGNATURE, ATLASSIAN_BODY, secrets)
    assert verify(sign("old-secret", ATLASSIAN_BODY), ATLASSIAN_BODY, secrets)
    assert not verify(sign("retired", ATLASSIAN_BODY), ATLASSIAN_BODY, secrets)


def test_no_secret_or_empty_secret_verifies_nothing():
    assert not verify(sign("", ATLASSIAN_BODY), ATLASSIAN_BODY, [])
    assert not verify(sign("", ATLASSIAN_BODY), ATLASSIAN_BODY, [""])


def test_the_signature_covers_the_raw_bytes_not_the_json():
    body = b'{"a": 1, "b": 2}'
    assert not verify(sign(ATLASSIAN_SECRET, body), b'{"a":1,"b":2}', [ATLASSIAN_SECRET])


def test_non_ascii_header_values_are_rejected_not_raised():
    assert not verify("sha256=é" * 8, ATLASSIAN_BODY, [ATLASSIAN_SECRET])
    assert not verify("sha256=\udcff", ATLASSIAN_BODY, [ATLASSIAN_SECRET])

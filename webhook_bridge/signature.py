"""Jira's ``X-Hub-Signature``: ``sha256=<hex>`` = HMAC-SHA256(secret, raw body bytes).

Only the ``sha256`` method is accepted (Atlassian warns another may come: it must then be added here, not
let through). Several secrets may be configured at once so a secret can be rotated without a refusal window.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

SIGNATURE_HEADER = "X-Hub-Signature"
METHOD = "sha256"


def _digest(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes) -> str:
    """The header value Jira sends for ``body`` signed with ``secret``."""
    return f"{METHOD}={_digest(secret, body)}"


def verify(header_value: str | None, body: bytes, secrets: Sequence[str]) -> bool:
    """True when ``header_value`` is a ``sha256=`` signature of ``body`` by one of ``secrets``.

    No secret (or only empty ones) verifies nothing: an HMAC with an empty key is forgeable.
    Each candidate is compared in constant time, and every configured secret is tried.
    """
    if not header_value:
        return False
    method, separator, provided = header_value.partition("=")
    if not separator or method != METHOD:
        return False
    provided_bytes = provided.strip().lower().encode("utf-8", "surrogatepass")
    matched = False
    for secret in secrets:
        if not secret:
            continue
        expected = _digest(secret, body).encode()
        matched |= hmac.compare_digest(expected, provided_bytes)
    return matched

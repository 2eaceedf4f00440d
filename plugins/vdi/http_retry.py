"""What every outbound HTTP session shares (Jira, Leostream): the retry policy, and a connection's ``verify``
extra read the way requests takes it. One home for both."""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

# Statuses that say "not processed, try again": safe to resend whatever the method.
_ALWAYS_RETRY = frozenset({429, 503})
# Statuses after which a write may or may not have happened: resent only for idempotent methods.
_RETRY_IF_IDEMPOTENT = frozenset({500, 502, 504})
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class ExternalRetry(Retry):
    """Exponential backoff with jitter that honours ``Retry-After`` and never resends a maybe-done write."""

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if self.total is not None and self.total < 0:
            return False
        if status_code in _ALWAYS_RETRY:
            return True
        return status_code in _RETRY_IF_IDEMPOTENT and method.upper() in _IDEMPOTENT


def retry_policy(attempts: int = 5, backoff_s: float = 0.5, max_backoff_s: float = 30) -> ExternalRetry:
    return ExternalRetry(
        total=attempts,
        connect=attempts,
        read=0,  # a read timeout may hide a write that happened: let the task-level retry decide
        status=attempts,
        allowed_methods=None,
        status_forcelist=_ALWAYS_RETRY | _RETRY_IF_IDEMPOTENT,
        backoff_factor=backoff_s,
        backoff_jitter=backoff_s,
        backoff_max=max_backoff_s,
        respect_retry_after_header=True,
        raise_on_status=False,
    )


def mount_retries(session: requests.Session, prefix: str, policy: Retry | None = None) -> requests.Session:
    """Make ``session`` retry calls under ``prefix`` with the shared policy."""
    session.mount(prefix, HTTPAdapter(max_retries=policy or retry_policy()))
    return session


def tls_verify(value: Any) -> bool | str:
    """A connection's ``verify`` extra for ``requests``: on unless turned off (also as text), or a CA bundle path."""
    if value is None or value == "":
        return True
    if isinstance(value, str):
        text = value.strip()
        return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text.lower(), text)
    return bool(value)

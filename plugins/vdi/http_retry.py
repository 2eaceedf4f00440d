"""What every outbound HTTP session shares (Jira, Leostream): the retry policy, and a connection's ``verify``
extra read the way requests takes it. One home for both."""

from __future__ import annotations

import math
import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader, MaxRetryError, ResponseError
from urllib3.util.retry import Retry

from vdi.settings import load

# Statuses that say "not processed, try again": safe to resend whatever the method.
_ALWAYS_RETRY = frozenset({429, 503})
# Statuses after which a write may or may not have happened: resent only for idempotent methods.
_RETRY_IF_IDEMPOTENT = frozenset({500, 502, 504})
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class ExternalRetry(Retry):
    """Exponential backoff with jitter that honours ``Retry-After`` up to ``retry_after_max`` and never resends a
    maybe-done write. A longer ``Retry-After`` ends the call at once with the server's answer: the task fails
    this try and Airflow's retry, which holds no worker slot while it waits, takes over.

    With a ``deadline`` (a ``time.monotonic()`` value) the counts do not end a call: it is retried until the
    deadline and no wait runs past it, for a caller that has no retry after it."""

    def __init__(self, *args, deadline: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def new(self, **kw) -> "ExternalRetry":
        kw.setdefault("deadline", self.deadline)
        return super().new(**kw)

    def _patience_left(self) -> float:
        return math.inf if self.deadline is None else self.deadline - time.monotonic()

    def get_backoff_time(self) -> float:
        return max(0.0, min(super().get_backoff_time(), self._patience_left()))

    def get_retry_after(self, response) -> float | None:
        seconds = super().get_retry_after(response)
        return None if seconds is None else max(0.0, min(seconds, self._patience_left()))

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if self.total is not None and self.total < 0:
            return False
        if status_code in _ALWAYS_RETRY:
            return True
        return status_code in _RETRY_IF_IDEMPOTENT and method.upper() in _IDEMPOTENT

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if response is not None and self._asks_too_long(response):
            raise MaxRetryError(_pool, url, ResponseError(  # type: ignore[arg-type]
                f"Retry-After {response.headers['Retry-After']!r} is beyond {self.retry_after_max} s"))
        new_retry = super().increment(method, url, response, error, _pool, _stacktrace)
        if new_retry._patience_left() <= 0:
            reason = error or ResponseError("still failing at the deadline")
            raise MaxRetryError(_pool, url, reason) from reason  # type: ignore[arg-type]
        return new_retry

    def _asks_too_long(self, response) -> bool:
        value = response.headers.get("Retry-After")
        if not value:
            return False
        try:
            return self.new(retry_after_max=math.inf).parse_retry_after(value) > self.retry_after_max
        except InvalidHeader:
            return False


def retry_policy(attempts: int = 5, backoff_s: float = 0.5, max_backoff_s: float = 30,
                 retry_after_max_s: float | None = None, retry_for_s: float | None = None) -> ExternalRetry:
    """The shared policy; ``retry_after_max_s`` defaults to ``VDI_RETRY_AFTER_MAX_S``. With ``retry_for_s``, every
    call through it is retried until that many seconds from now instead of ``attempts`` times."""
    counted = None if retry_for_s is not None else attempts
    return ExternalRetry(
        total=counted,
        connect=counted,
        read=0,  # a read timeout may hide a write that happened: let the task-level retry decide
        status=counted,
        allowed_methods=None,
        status_forcelist=_ALWAYS_RETRY | _RETRY_IF_IDEMPOTENT,
        backoff_factor=backoff_s,
        backoff_jitter=backoff_s,
        backoff_max=max_backoff_s,
        respect_retry_after_header=True,
        retry_after_max=load().retry_after_max_s if retry_after_max_s is None else retry_after_max_s,
        raise_on_status=False,
        deadline=None if retry_for_s is None else time.monotonic() + retry_for_s,
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

"""Airflow's REST API v2, as much as the bridge needs: a cached JWT and "trigger this run once"."""

from __future__ import annotations

import base64
import enum
import json
import threading
import time
from urllib.parse import quote, urlsplit

import urllib3
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ReadTimeoutError

# Renew a token this long before it expires (Airflow's jwt_leeway is 10 s).
_RENEW_BEFORE_S = 60
# A token whose expiry cannot be read is renewed after this long.
_UNKNOWN_LIFETIME_S = 600
# Keep-alive connections kept per client (one per relay thread is plenty; more are opened, then dropped).
_POOL_SIZE = 4
_JSON = "application/json"
# Airflow refuses a run's note longer than this (422).
_NOTE_CHARS = 1000


class TriggerOutcome(enum.Enum):
    CREATED = "created"
    ALREADY_TRIGGERED = "already_triggered"


class AirflowUnavailable(Exception):
    """Airflow did not take the trigger this time (down, slow, 5xx, DAG not there yet): try again later."""


class TriggerRefused(Exception):
    """Airflow refused the trigger for good (e.g. 400: conf fails the DAG's params): retrying will not help."""


class DagNotFound(Exception):
    """Airflow answered 404 naming the DAG: no such DAG (deleted, renamed, a route's typo), or one not parsed yet.
    A 404 that does not name the DAG (a wrong ``AIRFLOW_API_URL`` path) is ``AirflowUnavailable`` instead."""


def _token_expiry(token: str, now: float) -> float:
    """When the JWT expires (its ``exp`` claim, read without verifying: Airflow verifies it)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return now + _UNKNOWN_LIFETIME_S


def _detail(response: urllib3.BaseHTTPResponse):
    """Airflow's ``detail`` in an error answer, or None."""
    try:
        return json.loads(response.data).get("detail")
    except (ValueError, AttributeError, TypeError):
        return None


def _describe(response: urllib3.BaseHTTPResponse) -> str:
    """A short error description: status and Airflow's ``detail``, never the request (it holds the token)."""
    detail = _detail(response)
    text = f"HTTP {response.status}"
    return f"{text}: {str(detail)[:200]}" if detail else text


def _error_name(error: HTTPError) -> str:
    """What a transport error is called in errors and logs: its kind only, never its text (it holds the URL)."""
    if isinstance(error, ConnectTimeoutError) and not isinstance(error, NewConnectionError):  # a subclass
        return "ConnectTimeout"
    if isinstance(error, ReadTimeoutError):
        return "ReadTimeout"
    return "ConnectionError"


class AirflowClient:
    """Thread-safe; one per process. Credentials are kept in the instance only, never logged or raised.

    Plain urllib3 (one keep-alive connection pool, no retries, no redirects): ``requests`` costs several times
    as much CPU per trigger, for features the relay does not use.
    """

    def __init__(self, base_url: str, username: str, password: str, timeout_s: float = 5.0):
        self.base_url = base_url.rstrip("/")
        self._username = username
        self._password = password
        self.timeout = urllib3.Timeout(connect=min(2.0, timeout_s), read=timeout_s)
        self._prefix = urlsplit(self.base_url).path
        self._http = urllib3.connection_from_url(self.base_url, maxsize=_POOL_SIZE, block=False, retries=False,
                                                 timeout=self.timeout)
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_expires_at = 0.0

    def __repr__(self) -> str:
        return f"AirflowClient({self.base_url!r})"

    def _request(self, method: str, path: str, payload=None, headers: dict | None = None) -> urllib3.BaseHTTPResponse:
        """One HTTP exchange, the answer read in full (the connection goes back to the pool); errors are named only."""
        body = None
        if payload is not None:
            body = json.dumps(payload).encode()
            headers = {**(headers or {}), "Content-Type": _JSON}
        try:
            return self._http.urlopen(method, self._prefix + path, body=body, headers=headers, retries=False,
                                      redirect=False, preload_content=True, timeout=self.timeout)
        except HTTPError as error:
            raise AirflowUnavailable(_error_name(error)) from None

    def _fetch_token(self) -> str:
        try:
            response = self._request("POST", "/auth/token",
                                     {"username": self._username, "password": self._password})
        except AirflowUnavailable as error:
            raise AirflowUnavailable(f"token: {error}") from None
        if response.status >= 400:
            if response.status >= 500:
                raise AirflowUnavailable(f"token: {_describe(response)}")
            # Wrong credentials are a configuration error, but the delivery must not be lost over it.
            raise AirflowUnavailable(f"token refused: {_describe(response)}")
        try:
            return json.loads(response.data)["access_token"]
        except (ValueError, KeyError, TypeError):
            raise AirflowUnavailable("token: no access_token in the answer") from None

    def token(self, renew: bool = False) -> str:
        """The cached token, fetched again when missing, about to expire, or ``renew`` is asked."""
        with self._lock:
            now = time.time()
            if renew or self._token is None or now >= self._token_expires_at - _RENEW_BEFORE_S:
                token = self._fetch_token()
                self._token, self._token_expires_at = token, _token_expiry(token, now)
            return self._token

    def _authorized(self, method: str, path: str, payload=None) -> urllib3.BaseHTTPResponse:
        """A request with the cached token; on 401 the token is renewed once and the request repeated."""
        for renew in (False, True):
            headers = {"Authorization": f"Bearer {self.token(renew=renew)}", "Accept": _JSON}
            response = self._request(method, path, payload, headers)
            if response.status != 401:
                return response
        return response

    def trigger(self, dag_id: str, dag_run_id: str, conf: dict, note: str | None = None) -> TriggerOutcome:
        """Create the run ``dag_run_id`` of ``dag_id`` (logical date null) with ``note`` (shown beside the run in
        Airflow's UI); 409 means it exists already. Raises ``TriggerRefused`` (400, 422), ``DagNotFound`` (404
        naming the DAG) or ``AirflowUnavailable`` (anything else)."""
        body = {"dag_run_id": dag_run_id, "logical_date": None, "conf": conf}
        if note:
            body["note"] = note[:_NOTE_CHARS]
        response = self._authorized("POST", f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns", body)
        if response.status < 400:
            return TriggerOutcome.CREATED
        if response.status == 409:
            return TriggerOutcome.ALREADY_TRIGGERED
        if response.status in (400, 422):
            raise TriggerRefused(_describe(response))
        if response.status == 404 and f"'{dag_id}'" in str(_detail(response) or ""):
            # Airflow 3's trigger answers 404 "Dag with dag_id: '<id>' not found" when no (non-stale) DAG has the id.
            raise DagNotFound(_describe(response))
        # 401/403 (credentials, may be fixed), any other 404 (not Airflow's answer), 408/429/5xx: retry later.
        raise AirflowUnavailable(_describe(response))

    def healthy(self) -> bool:
        """Whether the API server answers its health endpoint (no credentials needed)."""
        try:
            return self._request("GET", "/api/v2/monitor/health").status < 400
        except AirflowUnavailable:
            return False

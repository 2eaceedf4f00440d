"""Leostream Connection Broker REST API v1: the provider's hook (connection type ``leostream``) and its client.

One broker session per task: ``broker_session()`` yields a client that logs in on first use, logs in again
once on 401 (expired sid), and logs out when the task is done.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import requests
from urllib3.util.retry import Retry

from airflow.sdk import BaseHook
from vdi.http_retry import mount_retries, retry_policy, tls_verify
from vdi.provider import DEFAULT_AUTH_SERVER, DEFAULT_TIMEOUT_S


class LeostreamError(RuntimeError):
    """The broker refused a call; carries its ``error_status`` (never the credentials)."""

    def __init__(self, method: str, path: str, status_code: int, error_status: str = "", error_message: str = ""):
        self.status_code = status_code
        self.error_status = error_status
        super().__init__(f"Leostream {method} {path}: HTTP {status_code} {error_status} {error_message}".strip())


class LeostreamClient:
    """The v1 calls VDI Studios uses, against ``<base_url>/rest/v1``.

    ``center_name`` picks the AWS center that discovers the desktops (None: the only one);
    ``auth_server`` is the authentication server the desktops' users are created under.
    """

    def __init__(self, base_url: str, user_login: str, password: str, *, verify: bool | str = True,
                 timeout_s: float = DEFAULT_TIMEOUT_S, retry: Retry | None = None, center_name: str | None = None,
                 auth_server: str = DEFAULT_AUTH_SERVER, session: requests.Session | None = None):
        self.api_url = base_url.rstrip("/") + "/rest/v1"
        self.center_name = center_name
        self.auth_server = auth_server
        self._user_login = user_login
        self._password = password
        self._timeout_s = timeout_s
        self._sid: str | None = None
        self.session = mount_retries(session or requests.Session(), self.api_url, retry)
        self.session.verify = verify

    # --- session ------------------------------------------------------------------------------------
    def login(self) -> None:
        response = self.session.post(f"{self.api_url}/session/login", timeout=self._timeout_s,
                                     json={"user_login": self._user_login, "password": self._password})
        if response.status_code != 200:
            raise self._error("POST", "/session/login", response)
        self._sid = response.json()["sid"]

    def logout(self) -> None:
        if self._sid is None:
            return
        try:
            self.session.post(f"{self.api_url}/session/logout", timeout=self._timeout_s,
                              headers={"Authorization": f"Bearer {self._sid}"})
        except requests.RequestException:
            pass  # the sid expires on its own; logout is a courtesy
        self._sid = None

    def __enter__(self) -> "LeostreamClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.logout()

    def request(self, method: str, path: str, *, json: Any = None, params: dict | None = None,
                ok: tuple[int, ...] = (200, 201, 202, 204)) -> Any:
        """One call with the session's sid; a 401 triggers one fresh login and one resend."""
        for attempt in (1, 2):
            if self._sid is None:
                self.login()
            response = self.session.request(method, f"{self.api_url}{path}", json=json, params=params,
                                            timeout=self._timeout_s,
                                            headers={"Authorization": f"Bearer {self._sid}"})
            if response.status_code == 401 and attempt == 1:
                self._sid = None
                continue
            if response.status_code not in ok:
                raise self._error(method, path, response)
            return response.json() if response.content else None
        raise AssertionError("unreachable")

    @staticmethod
    def _error(method: str, path: str, response: requests.Response) -> LeostreamError:
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        return LeostreamError(method, path, response.status_code, str(body.get("error_status", "")),
                              str(body.get("error_message", ""))[:300])

    # --- resources ----------------------------------------------------------------------------------
    def centers(self) -> list[dict]:
        return self.request("GET", "/centers")

    def scan_center(self, center_id: int) -> Any:
        """Ask for a scan; one already running (409 ``CONFLICT``) serves as well."""
        try:
            return self.request("POST", f"/centers/{center_id}/scan")
        except LeostreamError as error:
            if error.status_code == 409 and error.error_status == "CONFLICT":
                return None
            raise

    def pools(self) -> list[dict]:
        return self.request("GET", "/pools")

    def pool(self, pool_id: int) -> dict:
        return self.request("GET", f"/pools/{pool_id}")

    def create_pool(self, body: dict) -> dict:
        return self.request("POST", "/pools", json=body)["stored_data"]

    def delete_pool(self, pool_id: int) -> None:
        self.request("DELETE", f"/pools/{pool_id}")

    def policies(self) -> list[dict]:
        return self.request("GET", "/policies")

    def policy(self, policy_id: int) -> dict:
        return self.request("GET", f"/policies/{policy_id}")

    def create_policy(self, body: dict) -> dict:
        return self.request("POST", "/policies", json=body)["stored_data"]

    def update_policy(self, policy_id: int, body: dict) -> dict:
        return self.request("PUT", f"/policies/{policy_id}", json=body)["stored_data"]

    def pool_assignments(self, policy_id: int) -> list[dict]:
        return self.request("GET", f"/policies/{policy_id}/pool-assignments")

    def create_pool_assignment(self, policy_id: int, body: dict) -> dict:
        return self.request("POST", f"/policies/{policy_id}/pool-assignments", json=body)["stored_data"]

    def delete_pool_assignment(self, policy_id: int, assignment_id: int) -> None:
        self.request("DELETE", f"/policies/{policy_id}/pool-assignments/{assignment_id}")

    def create_user(self, body: dict) -> bool:
        """Create a user; False when the broker says it exists already (409 ``EXISTS_ALREADY``)."""
        try:
            self.request("POST", "/users", json=body)
            return True
        except LeostreamError as error:
            if error.status_code == 409 and error.error_status == "EXISTS_ALREADY":
                return False
            raise


def _extra(extras: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    """An extra as ``kind``; ``default`` when absent or empty (the connection form stores empty fields)."""
    value = extras.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    return kind(value.strip() if isinstance(value, str) else value)


def _retry(extras: dict[str, Any]) -> Retry:
    """The shared retry policy, with the connection's ``retries`` and ``retry_backoff`` when set."""
    overrides = {"attempts": _extra(extras, "retries", int, None),
                 "backoff_s": _extra(extras, "retry_backoff", float, None)}
    return retry_policy(**{name: value for name, value in overrides.items() if value is not None})


class LeostreamHook(BaseHook):
    """Airflow hook for the Leostream Connection Broker, shaped like the HTTP provider's ``HttpHook``.

    Connection: host = the broker's API URL (``https://broker.example``; without a scheme, ``schema`` or
    https; ``port`` appended when set), login/password = the API user. Extras (the form's fields are declared
    in ``vdi.provider``): ``verify`` (TLS verification, or a CA bundle path), ``timeout`` (seconds),
    ``retries`` and ``retry_backoff`` (the shared retry policy), ``center_name`` (the AWS center; the only
    one when empty), ``auth_server`` (where the desktops' users authenticate) and ``broker_address`` (what the
    desktops' agents register with; the API URL's host when empty).
    """

    conn_name_attr = "leostream_conn_id"
    default_conn_name = "leostream_default"
    conn_type = "leostream"
    hook_name = "Leostream Connection Broker"

    def __init__(self, leostream_conn_id: str = default_conn_name):
        super().__init__()
        self.leostream_conn_id = leostream_conn_id
        self._connection = None

    @property
    def connection(self):
        if self._connection is None:
            self._connection = self.get_connection(self.leostream_conn_id)
        return self._connection

    @property
    def extras(self) -> dict[str, Any]:
        return self.connection.extra_dejson or {}

    @property
    def base_url(self) -> str:
        """The broker's API URL, as ``HttpHook`` builds its base URL from host, schema and port."""
        host = (self.connection.host or "").rstrip("/")
        if not host:
            raise ValueError(f"the connection {self.leostream_conn_id!r} has no host (the broker's API URL)")
        url = host if "://" in host else f"{self.connection.schema or 'https'}://{host}"
        return f"{url}:{self.connection.port}" if self.connection.port else url

    def broker_address(self) -> str:
        """The address the desktops' Leostream agents register with: ``broker_address`` or the API URL's host."""
        if address := _extra(self.extras, "broker_address", str, None):
            return address
        api = urlsplit(self.base_url)
        return f"{api.hostname}:{api.port}" if api.port else api.hostname or ""

    def get_conn(self) -> LeostreamClient:
        """A new client for this connection (not logged in yet: it logs in on first use)."""
        extras = self.extras
        return LeostreamClient(
            self.base_url, self.connection.login or "", self.connection.password or "",
            verify=tls_verify(extras.get("verify")),
            timeout_s=_extra(extras, "timeout", float, DEFAULT_TIMEOUT_S),
            retry=_retry(extras),
            center_name=_extra(extras, "center_name", str, None),
            auth_server=_extra(extras, "auth_server", str, DEFAULT_AUTH_SERVER),
        )

    def test_connection(self) -> tuple[bool, str]:
        """Log in, find the AWS center (a cheap GET), log out; the message names no secret."""
        from vdi.broker import CenterNotFound, amazon_center  # vdi.broker imports this module

        try:
            client = self.get_conn()
            where = f"{self.base_url} as {self.connection.login}"
            with client:
                client.login()
                center = amazon_center(client)
        except CenterNotFound as error:
            return False, f"logged in to {where}, but {error}"
        except Exception as error:  # the form shows the cause; the client's errors carry no credentials
            return False, f"{type(error).__name__}: {error}"
        return True, (f"logged in to {where}; AWS center {center.get('name')!r}; the desktops' agents register "
                      f"with {self.broker_address()}")


@contextmanager
def broker_session(conn_id: str = LeostreamHook.default_conn_name) -> Iterator[LeostreamClient]:
    """One broker session for a task: a client from the connection that logs in on first use and logs out
    at the end."""
    with LeostreamHook(conn_id).get_conn() as client:
        yield client

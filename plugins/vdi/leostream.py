"""Leostream Connection Broker REST API v1: an Airflow hook shaped like a provider's, and its client.

One broker session per task: the client logs in on first use, logs in again once on 401 (expired sid),
and logs out when the task is done.
"""

from __future__ import annotations

from typing import Any

import requests

from airflow.sdk import BaseHook
from vdi.http_retry import mount_retries

DEFAULT_TIMEOUT_S = 15


class LeostreamError(RuntimeError):
    """The broker refused a call; carries its ``error_status`` (never the credentials)."""

    def __init__(self, method: str, path: str, status_code: int, error_status: str = "", error_message: str = ""):
        self.status_code = status_code
        self.error_status = error_status
        super().__init__(f"Leostream {method} {path}: HTTP {status_code} {error_status} {error_message}".strip())


class LeostreamClient:
    """The v1 calls VDI Studios uses, against ``<base_url>/rest/v1``."""

    def __init__(self, base_url: str, user_login: str, password: str, *, verify: bool = True,
                 timeout_s: float = DEFAULT_TIMEOUT_S, session: requests.Session | None = None):
        self.api_url = base_url.rstrip("/") + "/rest/v1"
        self._user_login = user_login
        self._password = password
        self._timeout_s = timeout_s
        self._sid: str | None = None
        self.session = mount_retries(session or requests.Session(), self.api_url)
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
        return self.request("POST", f"/centers/{center_id}/scan")

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

    def create_policy(self, body: dict) -> dict:
        return self.request("POST", "/policies", json=body)["stored_data"]

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


class LeostreamHook(BaseHook):
    """Airflow hook for the Leostream Connection Broker (connection type ``leostream``).

    Connection: host = broker URL (``https://broker.example``), login = API user, password = its password,
    extra ``{"verify": false}`` for a self-signed broker certificate.
    """

    conn_name_attr = "leostream_conn_id"
    default_conn_name = "leostream_default"
    conn_type = "leostream"
    hook_name = "Leostream Connection Broker"

    def __init__(self, leostream_conn_id: str = default_conn_name):
        super().__init__()
        self.leostream_conn_id = leostream_conn_id
        self._client: LeostreamClient | None = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "port"],
            "relabeling": {"host": "Broker URL", "login": "API user", "password": "API password"},
            "placeholders": {"host": "https://leostream.example.com", "extra": '{"verify": true}'},
        }

    def get_conn(self) -> LeostreamClient:
        if self._client is None:
            connection = self.get_connection(self.leostream_conn_id)
            host = connection.host or ""
            if "://" not in host:
                host = f"https://{host}"
            verify = bool((connection.extra_dejson or {}).get("verify", True))
            self._client = LeostreamClient(host, connection.login or "", connection.password or "", verify=verify)
        return self._client

    def __enter__(self) -> LeostreamClient:
        return self.get_conn()

    def __exit__(self, *exc_info) -> None:
        if self._client is not None:
            self._client.logout()

"""Jira calls through ``atlassian.Jira`` built from the Jira provider's ``jira`` connection: read issues, comment
once, transition once."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from vdi.http_retry import mount_retries, retry_policy, tls_verify
from vdi.request import status_name

COMMENT_MARKER_PREFIX = "vdi-studios ref:"
_PAGE = 100


class JiraTransitionUnavailable(RuntimeError):
    """The workflow offers no transition from the issue's status to the wanted one."""


def comment_marker(request_id: str, step: str) -> str:
    """The marker that makes a comment findable again, so a rerun does not post it twice."""
    return f"{COMMENT_MARKER_PREFIX} {step}/{request_id}"


class JiraTicket:
    """The calls the DAGs make on Jira issues, each safe to repeat."""

    def __init__(self, client):
        self.client = client

    @classmethod
    def from_connection(cls, conn_id: str = "jira_default", *, retry_for_s: float | None = None) -> "JiraTicket":
        """A client from the Airflow connection (the Jira provider's ``jira`` type, read as its ``JiraHook`` reads
        it): Cloud email + API token, or a Data Center personal access token (password, no login). Built here
        rather than by ``JiraHook.get_conn()`` so that its session carries the shared retry policy and a token
        goes through atlassian's own token auth. With ``retry_for_s`` its calls keep retrying a Jira that cannot be
        reached or answers 429/503 until that many seconds from now (``vdi.http_retry.retry_policy``)."""
        from airflow.sdk import BaseHook
        from atlassian import Jira

        connection = BaseHook.get_connection(conn_id)
        policy = retry_policy(retry_for_s=retry_for_s) if retry_for_s is not None else None
        session = mount_retries(requests.Session(), connection.host or "", policy)
        session.verify = tls_verify((connection.extra_dejson or {}).get("verify"))
        if connection.login:
            credentials = {"username": connection.login, "password": connection.password}
        else:
            credentials = {"token": connection.password}
        # The session's policy (vdi.http_retry) already honours a short Retry-After; the client's own would sleep
        # through a long one.
        return cls(Jira(url=connection.host or "", session=session, api_version="2", retry_with_header=False,
                        **credentials))

    @classmethod
    def for_failure_report(cls, conn_id: str = "jira_default") -> "JiraTicket":
        """A client for a failure callback, which no retry follows: its calls keep trying a Jira that is down,
        refusing connections or answering 429/503, for ``VDI_FAILURE_REPORT_WAIT_S`` from now, so an outage
        shorter than that does not leave a failed request without its *Failed* status and comment. A write is
        resent only when it cannot have been done (no connection, 429, 503)."""
        from vdi.settings import load

        return cls.from_connection(conn_id, retry_for_s=load().failure_report_wait_s)

    def issue(self, issue_key: str) -> dict[str, Any]:
        return self.client.get_issue(issue_key)

    def field_names(self) -> dict[str, str]:
        """Field display name → field id, for custom fields configured by name."""
        return {field["name"]: field["id"] for field in self.client.get_all_fields()}

    def user_property(self, account_id: str, key: str) -> Any:
        """The value of a Jira user property; None when the user has no such property."""
        try:
            found = self.client.get(f"{self.client.resource_url('user/properties')}/{quote(key, safe='')}",
                                    params={"accountId": account_id})
        except requests.HTTPError as error:
            if error.response is not None and error.response.status_code == 404:
                return None
            raise
        return (found or {}).get("value")

    def status(self, issue_key: str) -> str:
        return status_name(self.client.get_issue(issue_key, fields="status")["fields"]) or ""

    def transition_to(self, issue_key: str, target_status: str, via: tuple[str, ...] = ()) -> bool:
        """Move the issue to ``target_status`` (through a ``via`` status when the workflow has no direct
        transition); False when it is there already."""
        if self.status(issue_key).lower() == target_status.lower():
            return False
        if self._follow(issue_key, target_status):
            return True
        for step in via:
            if self._follow(issue_key, step) and self._follow(issue_key, target_status):
                return True
        offered = ", ".join(sorted({str(t.get("to")) for t in self.client.get_issue_transitions(issue_key)}))
        raise JiraTransitionUnavailable(f"{issue_key} cannot move to {target_status!r} from "
                                        f"{self.status(issue_key)!r} (offered: {offered or 'none'})")

    def _follow(self, issue_key: str, target_status: str) -> bool:
        for transition in self.client.get_issue_transitions(issue_key):
            if str(transition.get("to", "")).lower() == target_status.lower():
                self.client.set_issue_status_by_transition_id(issue_key, transition["id"])
                return True
        return False

    def comments(self, issue_key: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            page = self.client.get(f"{self.client.resource_url('issue')}/{issue_key}/comment",
                                   params={"startAt": len(found), "maxResults": _PAGE}) or {}
            batch = page.get("comments", [])
            found += batch
            if not batch or len(found) >= page.get("total", len(found)):
                return found

    def comment_once(self, issue_key: str, marker: str, text: str) -> bool:
        """Post ``text`` with ``marker`` unless a comment with that marker exists; True when posted."""
        for comment in self.comments(issue_key):
            if marker in str(comment.get("body", "")):
                return False
        self.client.issue_add_comment(issue_key, f"{text}\n\n_{marker}_")
        return True

    def search(self, jql: str, fields: list[str], page_size: int = _PAGE,
               max_pages: int = 1000) -> list[dict[str, Any]]:
        """The issues matching ``jql`` with ``fields``, read page by page with the enhanced search
        (``POST /search/jql``, ``nextPageToken``); more than ``max_pages`` pages is an error, not a silent cut."""
        found: list[dict[str, Any]] = []
        token = None
        for _ in range(max_pages):
            body: dict[str, Any] = {"jql": jql, "fields": fields, "maxResults": page_size}
            if token:
                body["nextPageToken"] = token
            page = self.client.post(self.client.resource_url("search/jql"), data=body) or {}
            found += page.get("issues", [])
            token = page.get("nextPageToken")
            if page.get("isLast", True) or not token:
                return found
        raise RuntimeError(f"the search {jql!r} has more than {max_pages} pages of {page_size}")

"""Check real HTTP traffic against the vendors' OpenAPI documents (sandbox/vendor_specs/) with openapi-core.

``SpecChecker.watch(session)`` adds a response hook to a ``requests.Session`` (ours, or the one inside
``atlassian.Jira``), so every request the client sends and every response the sandbox answers is validated.
Failures are collected, not raised inside the client, and ``assert_clean()`` reports them.

Adaptations to the documents, each deliberate:
- Jira: the document covers ``/rest/api/3`` only; ``/rest/api/2`` calls are checked against the same operation
  (the two versions differ only in rich-text bodies, which the document leaves untyped). ``/rest/api/3/search/jql``
  is newer than the vendored document: its operation is added from Atlassian's published
  ``SearchAndReconcileResults`` shape, with issues checked as the document's ``IssueBean``.
- Jira answers timestamps as ``2026-11-28T17:53:16.123+0000`` and Leostream as ``2026-11-28 17:53:16``; both
  documents call them ``date-time`` (RFC 3339). The checker accepts RFC 3339 and those two vendor layouts.
- Leostream: the server is ``/v1`` under ``/rest``; the path template ``{id:num}`` (a Mojolicious placeholder)
  is read as ``{id}``.
- A response with no body passes where the document declares an untyped body (``schema: {}``), as on Jira's
  204s: the generated document gives every response a JSON content entry.
- Error responses the documents describe without a body schema are checked against the vendor's error shape
  (Jira ``ErrorCollection``; Leostream ``ErrorShortBasicModel``; Leostream 404 has no body at all).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from urllib.parse import parse_qsl, urlsplit

import requests
from jsonschema import Draft4Validator, Draft202012Validator
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from sandbox.vendor_specs import JIRA_SPEC, LEOSTREAM_SPEC

_JIRA_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?[+-]\d{4}$")
_LEOSTREAM_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


def _is_date_time(value) -> bool:
    if not isinstance(value, str):
        return True
    if _JIRA_TIME.match(value) or _LEOSTREAM_TIME.match(value):
        return True
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
        return "T" in value
    except ValueError:
        return False


_CONFIG = Config(extra_format_validators={"date-time": _is_date_time})

_SEARCH_JQL_OPERATION = {
    "operationId": "searchAndReconsileIssuesUsingJql",
    "security": [{"basicAuth": []}],
    "parameters": [{"name": name, "in": "query", "schema": schema} for name, schema in (
        ("jql", {"type": "string"}), ("nextPageToken", {"type": "string"}), ("maxResults", {"type": "integer"}),
        ("fields", {"type": "array", "items": {"type": "string"}}), ("expand", {"type": "string"}),
        ("properties", {"type": "array", "items": {"type": "string"}}), ("fieldsByKeys", {"type": "boolean"}),
        ("failFast", {"type": "boolean"}), ("reconcileIssues", {"type": "array", "items": {"type": "integer"}}))],
    "responses": {
        "200": {"description": "Returned if the request is successful.", "content": {"application/json": {
            "schema": {"type": "object", "additionalProperties": False, "properties": {
                "issues": {"type": "array", "items": {"$ref": "#/components/schemas/IssueBean"}},
                "isLast": {"type": "boolean"}, "nextPageToken": {"type": "string"},
                "names": {"type": "object", "additionalProperties": {"type": "string"}},
                "schema": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/JsonTypeBean"}},
            }}}}},
        "400": {"description": "Returned if the JQL query is invalid.", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/ErrorCollection"}}}},
        "401": {"description": "Returned if the authentication credentials are incorrect or missing."},
    },
}


@dataclass
class Problem:
    method: str
    url: str
    status: int
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.method} {self.url} -> {self.status}: {self.where}: {self.detail}"


@dataclass
class SpecChecker:
    vendor: str  # "jira" | "leostream"
    api: OpenAPI
    spec: dict
    problems: list[Problem] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    # (method, path regex) of requests a client sends that the document does not describe as the client sends them
    request_exemptions: list[tuple[str, str, str]] = field(default_factory=list)
    skip_requests: bool = False

    # --- what a response should be checked against ---------------------------------------------------
    def _spec_path(self, path: str) -> str | None:
        if self.vendor == "jira":
            if path.startswith("/rest/api/2/"):
                path = "/rest/api/3/" + path[len("/rest/api/2/"):]
            return path if path.startswith("/rest/api/3/") else None
        return path[len("/rest/v1"):] if path.startswith("/rest/v1/") else None

    def _error_schema(self) -> dict:
        schemas = self.spec["components"]["schemas"]
        name = "ErrorCollection" if self.vendor == "jira" else "ErrorShortBasicModel"
        return {**schemas[name], "components": self.spec["components"]}

    def _server(self) -> str:
        return "http://sandbox.test" + ("" if self.vendor == "jira" else "/rest/v1")

    # --- checking --------------------------------------------------------------------------------
    def check(self, response: requests.Response) -> None:
        prepared = response.request
        parts = urlsplit(prepared.url)
        spec_path = self._spec_path(parts.path)
        if spec_path is None:
            return
        method = prepared.method.lower()
        body = prepared.body.encode() if isinstance(prepared.body, str) else (prepared.body or b"")
        headers = dict(prepared.headers)
        content_type = headers.get("Content-Type", "application/json").split(";")[0]
        relative = spec_path if self.vendor == "jira" else spec_path
        request = MockRequest("http://sandbox.test", method,
                              relative if self.vendor == "jira" else "/rest/v1" + relative,
                              args=_query_multidict(parts.query), headers=headers, data=body,
                              content_type=content_type)
        label = f"{prepared.method} {parts.path}"
        self.checked.append(label)
        exempt = self.skip_requests or any(m == prepared.method and re.fullmatch(p, parts.path)
                     for m, p, _ in self.request_exemptions)
        if not exempt:
            try:
                self.api.validate_request(request)
            except Exception as error:  # openapi-core raises one of many validation errors
                self.problems.append(Problem(prepared.method, prepared.url, response.status_code, "request",
                                             _describe(error)))
        self._check_response(request, response, label)

    def _check_response(self, request: MockRequest, response: requests.Response, label: str) -> None:
        status = response.status_code
        operation = self._operation(request)
        documented = (operation or {}).get("responses", {}).get(str(status), {})
        documented = self._resolve(documented)
        has_schema = bool(documented.get("content"))
        if status >= 400 and not has_schema:
            if self.vendor == "leostream" and status == 404:
                if response.content:
                    self.problems.append(Problem(request.method.upper(), label, status, "response",
                                                 "Leostream's 404 has no body"))
                return
            self._validate_json(response, self._error_schema(), label)
            return
        if not response.content and all(not media.get("schema") for media in documented.get("content", {}).values()):
            return  # an empty body where the document declares an untyped one ({}), e.g. Jira's 204s
        mock = MockResponse(response.content, status_code=status,
                            content_type=response.headers.get("Content-Type", "application/json").split(";")[0],
                            headers=dict(response.headers))
        try:
            self.api.validate_response(request, mock)
        except Exception as error:
            self.problems.append(Problem(request.method.upper(), label, status, "response", _describe(error)))

    def _operation(self, request: MockRequest) -> dict | None:
        path = request.path if self.vendor == "jira" else request.path[len("/rest/v1"):]
        for template, item in self.spec["paths"].items():
            pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
            if re.match(pattern, path) and request.method in item:
                literal = "{" not in template
                if literal or not any("{" not in t and t == path for t in self.spec["paths"]):
                    return item[request.method]
        return None

    def _resolve(self, node: dict) -> dict:
        while "$ref" in node:
            name = node["$ref"].split("/")
            node = self.spec[name[1]][name[2]][name[3]]
        return node

    def _validate_json(self, response: requests.Response, schema: dict, label: str) -> None:
        try:
            body = response.json()
        except ValueError:
            self.problems.append(Problem("", label, response.status_code, "response", "error body is not JSON"))
            return
        validator = (Draft4Validator if self.vendor == "jira" else Draft202012Validator)(schema)
        for error in validator.iter_errors(body):
            self.problems.append(Problem("", label, response.status_code, "response", error.message))

    # --- wiring ------------------------------------------------------------------------------------
    def watch(self, session: requests.Session) -> requests.Session:
        session.hooks.setdefault("response", []).append(lambda response, *a, **k: self.check(response))
        return session

    @contextmanager
    def sending_bad_requests(self) -> Iterator[None]:
        """Within this block requests are meant to break the document; only the responses are checked."""
        self.skip_requests = True
        try:
            yield
        finally:
            self.skip_requests = False

    def assert_clean(self) -> None:
        assert self.checked, "no call was checked against the OpenAPI document"
        assert not self.problems, "traffic that does not match the OpenAPI document:\n" + "\n".join(
            str(p) for p in self.problems)

    def reset(self) -> None:
        self.problems.clear()
        self.checked.clear()


def _query_multidict(query: str) -> dict:
    values: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        values[key] = value
    return values


def _describe(error: Exception) -> str:
    """The schema errors behind an openapi-core error (its own message repeats the whole value)."""
    reasons = []
    cause: BaseException | None = error
    while cause is not None:
        reasons += [e.message[:300] for e in getattr(cause, "schema_errors", None) or ()]
        cause = cause.__cause__
    return f"{type(error).__name__}: " + ("; ".join(reasons) if reasons else str(error)[:500])


@lru_cache(maxsize=None)
def _jira_document() -> tuple[OpenAPI, dict]:
    spec = json.loads(JIRA_SPEC.read_text())
    spec["servers"] = [{"url": "http://sandbox.test"}]
    spec["paths"]["/rest/api/3/search/jql"] = {"get": _SEARCH_JQL_OPERATION,
                                               "post": {**copy.deepcopy(_SEARCH_JQL_OPERATION), "parameters": [],
                                                        "operationId": "searchAndReconsileIssuesUsingJqlPost",
                                                        "requestBody": {"content": {"application/json": {
                                                            "schema": {"type": "object"}}}}}}
    return OpenAPI.from_dict(spec, config=_CONFIG), spec


@lru_cache(maxsize=None)
def _leostream_document() -> tuple[OpenAPI, dict]:
    spec = json.loads(LEOSTREAM_SPEC.read_text())
    spec["servers"] = [{"url": "http://sandbox.test/rest/v1"}]
    spec["paths"] = {re.sub(r"\{(\w+):num\}", r"{\1}", path): item for path, item in spec["paths"].items()}
    return OpenAPI.from_dict(spec, config=_CONFIG), spec


def jira_checker() -> SpecChecker:
    api, spec = _jira_document()
    return SpecChecker("jira", api, spec)


def leostream_checker() -> SpecChecker:
    api, spec = _leostream_document()
    return SpecChecker("leostream", api, spec)

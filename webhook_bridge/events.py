"""What a verified Jira delivery is: its id, its JSON, whether it is fresh, and which DAG (if any) it goes to."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from vdi.request import ISSUE_KEY_PATTERN

IDENTIFIER_HEADER = "X-Atlassian-Webhook-Identifier"
_IDENTIFIER = re.compile(r"[\x21-\x7e]{1,256}")
# Airflow's default [scheduler] allowed_run_id_pattern; run ids are at most 250 characters.
_RUN_ID_SAFE = re.compile(r"[A-Za-z0-9_.~:+-]{1,200}")
_ISSUE_KEY = re.compile(ISSUE_KEY_PATTERN)


class Malformed(ValueError):
    """The body or a header is not a usable Jira delivery (answered 400, never stored)."""


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


class _OutOfRange(ValueError):
    pass


def _wide_exponent(text: str) -> bool:
    """An exponent of 3 digits or more: Python may read the number differently from jsonb (1e-400 is 0.0)."""
    return len(text.lower().partition("e")[2].lstrip("+-")) >= 3


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _OutOfRange(text[:20])
    return value


# What jsonb cannot take, or might read differently from Python, can only come from a \u escape (\u0000 or a
# surrogate), a raw NUL or surrogate (UTF-8 lead byte ED; also UTF-16/32 bodies), a byte-order mark, or a number
# with a 3-digit exponent (seen by the float hook). A body without any of them is stored as received (no walk, no
# second serialisation); one with any (false alarms included, e.g. Hangul text) is walked and re-serialised.
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


def _needs_check(body: bytes) -> bool:
    return (b"\x00" in body or b"\xed" in body or body.startswith(b"\xef\xbb\xbf")
            or (b"\\u" in body and _SUSPECT_ESCAPE.search(body) is not None))


def parse(body: bytes) -> tuple[dict, str | None]:
    """The body as a JSON object that PostgreSQL's jsonb can store, and the body's text when it can be stored
    as it came (else None: store the parsed object re-serialised); ``Malformed`` when it is not usable."""
    wide_exponent = False

    def parse_float(text: str) -> float:
        nonlocal wide_exponent
        wide_exponent = wide_exponent or _wide_exponent(text)
        return _finite_float(text)

    try:
        payload = json.loads(body, parse_constant=_reject_constant, parse_float=parse_float)
    except _OutOfRange:
        raise Malformed("body holds a number out of range") from None
    except (ValueError, RecursionError, UnicodeDecodeError) as error:
        raise Malformed("body is not valid JSON") from error
    if not isinstance(payload, dict):
        raise Malformed("body is not a JSON object")
    if not wide_exponent and not _needs_check(body):
        return payload, body.decode()
    _check_storable(payload)
    return payload, None


def _check_storable(payload: dict) -> None:
    """jsonb refuses NUL characters, lone surrogates and non-finite numbers: refuse them here, as 400."""
    stack: list = [payload]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str):
            if "\x00" in value:
                raise Malformed("body holds a NUL character")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise Malformed("body holds an unpaired surrogate") from None
        elif isinstance(value, float) and not math.isfinite(value):
            raise Malformed("body holds a number out of range")


def delivery_id(header_value: str | None, body: bytes) -> tuple[str, bool]:
    """The delivery's id and whether it was derived from the body (the identifier header was missing)."""
    if header_value is None or header_value == "":
        return "body-sha256-" + hashlib.sha256(body).hexdigest(), True
    if not _IDENTIFIER.fullmatch(header_value):
        raise Malformed(f"{IDENTIFIER_HEADER} is not 1-256 printable ASCII characters")
    return header_value, False


def dag_run_id(delivery_id_: str) -> str:
    """The Airflow run id of a delivery: readable when the id is run-id-safe, else a digest of it."""
    if _RUN_ID_SAFE.fullmatch(delivery_id_):
        return f"jira__{delivery_id_}"
    return "jira__sha256-" + hashlib.sha256(delivery_id_.encode()).hexdigest()[:40]


def staleness(payload: Mapping, now_ms: float, window_s: float, skew_s: float) -> str | None:
    """Why the body's ``timestamp`` (epoch ms) is outside the replay window, or None when it is inside."""
    timestamp = payload.get("timestamp")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        return "no timestamp"
    if timestamp < now_ms - window_s * 1000:
        return f"stale: older than the {window_s:.0f} s replay window"
    if timestamp > now_ms + skew_s * 1000:
        return "timestamp in the future"
    return None


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def _dig(payload: dict, *path: str):
    value = payload
    for key in path:
        if not isinstance(value, dict):  # parsed JSON: objects are dicts
            return None
        value = value.get(key)
    return value


@dataclass(frozen=True)
class Facts:
    """The fields routing looks at."""

    event: str
    issue_event_type: str | None
    issue_key: str | None
    project: str | None
    issue_type: str | None
    status: str | None

    @classmethod
    def of(cls, payload: dict) -> "Facts":
        key = _text(_dig(payload, "issue", "key"))
        key = key if key and _ISSUE_KEY.fullmatch(key) else None
        project = _text(_dig(payload, "issue", "fields", "project", "key")) or (key.rsplit("-", 1)[0] if key else None)
        return cls(
            event=_text(payload.get("webhookEvent")) or "",
            issue_event_type=_text(payload.get("issue_event_type_name")),
            issue_key=key,
            project=project,
            issue_type=_text(_dig(payload, "issue", "fields", "issuetype", "name")),
            status=_text(_dig(payload, "issue", "fields", "status", "name")),
        )


@dataclass(frozen=True)
class Route:
    """Deliveries whose event (and, when given, issue event type and status) match go to ``dag_id``."""

    dag_id: str
    events: frozenset[str]
    issue_event_types: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, entry: Mapping) -> "Route":
        unknown = set(entry) - {"dag_id", "events", "issue_event_types", "statuses"}
        if unknown or not entry.get("dag_id") or not entry.get("events"):
            raise ValueError(f"route {dict(entry)!r}: needs dag_id and events; may have issue_event_types, statuses")
        return cls(entry["dag_id"], frozenset(entry["events"]), frozenset(entry.get("issue_event_types", ())),
                   frozenset(entry.get("statuses", ())))

    def matches(self, facts: Facts) -> bool:
        return (facts.event in self.events
                and (not self.issue_event_types or facts.issue_event_type in self.issue_event_types)
                and (not self.statuses or facts.status in self.statuses))


@dataclass(frozen=True)
class Decision:
    dag_id: str | None
    reason: str | None = None


@dataclass(frozen=True)
class Router:
    """The configured set of events: routes (first match wins), allowed projects and issue types (empty: any)."""

    routes: Sequence[Route]
    projects: frozenset[str] = field(default_factory=frozenset)
    issue_types: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_config(cls, routes: Sequence[Mapping], projects: Sequence[str] = (), issue_types: Sequence[str] = ()):
        return cls([Route.from_config(entry) for entry in routes], frozenset(projects), frozenset(issue_types))

    def decide(self, facts: Facts) -> Decision:
        if not facts.event:
            return Decision(None, "no webhookEvent")
        route = next((route for route in self.routes if route.matches(facts)), None)
        if route is None:
            return Decision(None, f"no route for event {facts.event[:100]}")
        if facts.issue_key is None:
            return Decision(None, "no issue key")
        if self.projects and facts.project not in self.projects:
            return Decision(None, f"project {str(facts.project)[:100]} is not handled")
        if self.issue_types and facts.issue_type not in self.issue_types:
            return Decision(None, f"issue type {str(facts.issue_type)[:100]} is not handled")
        return Decision(route.dag_id)

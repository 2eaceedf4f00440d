"""What a verified Jira delivery is: its id, its JSON, whether it is fresh, which DAG (if any) it goes to and why."""

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
# Airflow's default [scheduler] allowed_run_id_pattern; it also refuses ".." (path traversal), and a run id is at
# most 250 characters: an issue key (at most 41, ISSUE_KEY_PATTERN) + "__jira__" + 200 fits.
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


def dag_run_id(issue_key: str, delivery_id_: str) -> str:
    """The Airflow run id of a delivery about ``issue_key``: the key first, so that Airflow's run list says which
    ticket a run serves, then the delivery id as it is when Airflow takes it, else a digest of it. Derived from the
    delivery alone, so a repeated trigger is Airflow's 409."""
    if _RUN_ID_SAFE.fullmatch(delivery_id_) and ".." not in delivery_id_:
        return f"{issue_key}__jira__{delivery_id_}"
    return f"{issue_key}__jira__sha256-" + hashlib.sha256(delivery_id_.encode()).hexdigest()[:40]


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


CREATED = "jira:issue_created"
UPDATED = "jira:issue_updated"
# The events that move an issue into a status: created in it, or updated with a status change in the changelog.
MOVE_EVENTS = frozenset({CREATED, UPDATED})
# Names from the payload are cut to this length in reasons and notes.
_NAME_CHARS = 100


def _status_moves(payload: dict) -> tuple[str, ...]:
    """The statuses a ``jira:issue_updated`` changelog moves the issue to: its items whose ``field`` is Jira's own
    ``status`` (a custom field may be named "status" too: its ``fieldtype`` is ``custom``)."""
    items = _dig(payload, "changelog", "items")
    if not isinstance(items, list):
        return ()
    return tuple(item["toString"] for item in items
                 if isinstance(item, dict) and item.get("field") == "status" and item.get("fieldtype", "jira") == "jira"
                 and isinstance(item.get("toString"), str))


@dataclass(frozen=True)
class Facts:
    """The fields routing looks at."""

    event: str
    issue_event_type: str | None
    issue_key: str | None
    project: str | None
    issue_type: str | None
    status: str | None
    # The statuses this delivery moved the issue into: the changelog's status change of an update, the status of
    # a created issue; empty for everything else (a comment, an edit, another event).
    moved_to: tuple[str, ...]

    @classmethod
    def of(cls, payload: dict) -> "Facts":
        key = _text(_dig(payload, "issue", "key"))
        key = key if key and _ISSUE_KEY.fullmatch(key) else None
        project = _text(_dig(payload, "issue", "fields", "project", "key")) or (key.rsplit("-", 1)[0] if key else None)
        event = _text(payload.get("webhookEvent")) or ""
        status = _text(_dig(payload, "issue", "fields", "status", "name"))
        if event == UPDATED:
            moved_to = _status_moves(payload)
        else:
            moved_to = (status,) if event == CREATED and status else ()
        return cls(
            event=event,
            issue_event_type=_text(payload.get("issue_event_type_name")),
            issue_key=key,
            project=project,
            issue_type=_text(_dig(payload, "issue", "fields", "issuetype", "name")),
            status=status,
            moved_to=moved_to,
        )

    def change(self) -> str:
        """What the delivery changed, for a reason: "(status moved to In Progress)", "(no status change)"..."""
        if self.event == UPDATED:
            moves = ", ".join(name[:_NAME_CHARS] for name in self.moved_to)
            return f" (status moved to {moves})" if moves else " (no status change)"
        if self.event == CREATED:
            return f" (created in {self.status[:_NAME_CHARS]})" if self.status else " (created without a status)"
        return ""


_ROUTE_SHAPE = "dag_id, and moved_to or events; optionally issue_event_types, issue_types, statuses"
_VERBS = {CREATED: "created", UPDATED: "updated"}


def _names(entry: Mapping, key: str) -> frozenset[str]:
    """A route's list of names, or an error that says what is wrong with it."""
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(name, str) and name for name in value):
        raise ValueError(f"{key} must be a list of names")
    if key in entry and not value:
        raise ValueError(f"{key} is empty")
    return frozenset(value)


@dataclass(frozen=True)
class Route:
    """Deliveries go to ``dag_id`` when their event is one of ``events`` and, for each key that is given, their
    issue event type is one of ``issue_event_types``, the issue's type one of ``issue_types``, its status one of
    ``statuses``, and the delivery moved the issue into one of the ``moved_to`` statuses (a status change in an
    update's changelog, or an issue created in it). Status and issue type names are compared case-insensitively
    (kept casefolded here)."""

    dag_id: str
    events: frozenset[str]
    issue_event_types: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()
    moved_to: frozenset[str] = frozenset()
    issue_types: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, entry) -> "Route":
        """A route from its configuration (``BRIDGE_ROUTES``); ``ValueError`` saying what is wrong with it."""
        if not isinstance(entry, Mapping):
            raise ValueError(f"a route is an object with {_ROUTE_SHAPE}")
        unknown = sorted(map(str, set(entry) - {"dag_id", "moved_to", "events", "issue_event_types", "issue_types",
                                                 "statuses"}))
        if unknown:
            raise ValueError(f"unknown key {', '.join(unknown)}; a route has {_ROUTE_SHAPE}")
        if not isinstance(entry.get("dag_id"), str) or not entry["dag_id"]:
            raise ValueError(f"no dag_id; a route has {_ROUTE_SHAPE}")
        events, moved_to, statuses = _names(entry, "events"), _names(entry, "moved_to"), _names(entry, "statuses")
        if moved_to:
            if statuses:
                raise ValueError("moved_to and statuses do not go together: moved_to names the statuses")
            events = events or MOVE_EVENTS
            if not events <= MOVE_EVENTS:
                raise ValueError(f"moved_to applies to {CREATED} and {UPDATED} only")
        elif not events:
            raise ValueError(f"neither moved_to nor events; a route has {_ROUTE_SHAPE}")
        return cls(entry["dag_id"], events, _names(entry, "issue_event_types"),
                   frozenset(map(str.casefold, statuses)), frozenset(map(str.casefold, moved_to)),
                   frozenset(map(str.casefold, _names(entry, "issue_types"))))

    def matches(self, facts: Facts) -> bool:
        return (facts.event in self.events
                and (not self.issue_event_types or facts.issue_event_type in self.issue_event_types)
                and (not self.issue_types or (facts.issue_type or "").casefold() in self.issue_types)
                and (not self.statuses or (facts.status or "").casefold() in self.statuses)
                and (not self.moved_to or any(name.casefold() in self.moved_to for name in facts.moved_to)))

    def note(self, facts: Facts) -> str:
        """What started the run, in words: the run's note in Airflow ("VDI-12 moved to Approved in Jira")."""
        moved = next((name[:_NAME_CHARS] for name in facts.moved_to if name.casefold() in self.moved_to), None)
        if moved is None:
            return f"{facts.issue_key} {_VERBS.get(facts.event, facts.event[:_NAME_CHARS])} in Jira"
        if facts.event == CREATED:
            return f"{facts.issue_key} created in {moved} in Jira"
        return f"{facts.issue_key} moved to {moved} in Jira"


@dataclass(frozen=True)
class Decision:
    dag_id: str | None
    reason: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Router:
    """The configured set of events: routes (first match wins), allowed projects and issue types (empty: any)."""

    routes: Sequence[Route]
    projects: frozenset[str] = field(default_factory=frozenset)
    issue_types: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_config(cls, routes: Sequence, projects: Sequence[str] = (), issue_types: Sequence[str] = ()):
        """``ValueError`` naming the first bad route (by its place in ``BRIDGE_ROUTES``) and what is wrong."""
        parsed = []
        for number, entry in enumerate(routes, 1):
            try:
                parsed.append(Route.from_config(entry))
            except ValueError as error:
                shown = json.dumps(entry, default=str)[:200]
                raise ValueError(f"BRIDGE_ROUTES route {number} {shown}: {error}") from None
        return cls(parsed, frozenset(projects), frozenset(issue_types))

    def decide(self, facts: Facts) -> Decision:
        if not facts.event:
            return Decision(None, "no webhookEvent")
        route = next((route for route in self.routes if route.matches(facts)), None)
        if route is None:
            return Decision(None, f"no route for event {facts.event[:_NAME_CHARS]}{facts.change()}")
        if facts.issue_key is None:
            return Decision(None, "no issue key")
        if self.projects and facts.project not in self.projects:
            return Decision(None, f"project {str(facts.project)[:_NAME_CHARS]} is not handled")
        if self.issue_types and facts.issue_type not in self.issue_types:
            return Decision(None, f"issue type {str(facts.issue_type)[:_NAME_CHARS]} is not handled")
        return Decision(route.dag_id, note=route.note(facts))

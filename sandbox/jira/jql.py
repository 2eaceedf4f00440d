"""The JQL subset the sandbox understands, with Jira's own error messages.

Supported: clauses joined by ``AND``; fields ``project``, ``status``, ``issuetype`` (``type``), ``key``
(``issuekey``), ``reporter`` with ``=``, ``!=``, ``in (...)``, ``not in (...)``; ``created`` and ``updated`` with
``=``, ``>``, ``>=``, ``<``, ``<=`` against a relative date (``-15m``, ``-2h``, ``-1d``, ``-1w``) or an absolute one
(``"2026-11-28"``, ``"2026-11-28 17:30"``, in UTC); then an optional ``ORDER BY field [ASC|DESC], ...``.
Values may be quoted with ``"`` or ``'``. Anything else is refused with a 400, as Jira refuses what it cannot parse.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

_TOKEN = re.compile(r"""\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<op>!=|>=|<=|=|>|<|~)|(?P<punct>[(),])
                        |(?P<word>[^\s(),=!<>~"']+))""", re.VERBOSE)
_RELATIVE = re.compile(r"^([-+]?)(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_FIELD_ALIASES = {"project": "project", "status": "status", "issuetype": "issuetype", "type": "issuetype",
                  "key": "key", "issuekey": "key", "id": "key", "reporter": "reporter", "created": "created",
                  "createddate": "created", "updated": "updated", "updateddate": "updated"}
_DATE_FIELDS = {"created", "updated"}
_ORDERABLE = {"key", "created", "updated", "status", "project", "issuetype"}


class JqlError(ValueError):
    """A query Jira would refuse; the message is what Jira puts in ``errorMessages``."""


class Catalog(Protocol):
    """What the evaluator needs to know about the site."""

    def project_keys(self) -> dict[str, str]: ...  # key or id (upper) -> key
    def status_names(self) -> dict[str, str]: ...  # name or id (lower) -> name
    def issuetype_names(self) -> dict[str, str]: ...  # name or id (lower) -> name
    def user_ids(self) -> dict[str, str]: ...  # accountId / email / display name (lower) -> accountId
    def issue_exists(self, key: str) -> bool: ...


@dataclass
class Query:
    predicate: Callable[[Any], bool]
    order: list[tuple[str, bool]]  # (field, descending)
    warnings: list[str]

    def sort(self, issues: list[Any], value_of: Callable[[Any, str], Any]) -> list[Any]:
        ordered = list(issues)
        for name, descending in reversed(self.order or [("created", True)]):
            ordered.sort(key=lambda issue: value_of(issue, name), reverse=descending)
        return ordered


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise JqlError(f"Error in the JQL Query: The character '{text[position]}' is a reserved JQL character. "
                           f"You must enclose it in a string or use the escape '\\u{ord(text[position]):04x}' "
                           f"instead. (line 1, character {position + 1})")
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "str":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        tokens.append((kind, value))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str, catalog: Catalog, strict: bool):
        self.tokens = _tokens(text)
        self.position = 0
        self.catalog = catalog
        self.strict = strict
        self.warnings: list[str] = []

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        index = self.position + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise JqlError("Error in the JQL Query: Expecting either a value, list or function but got "
                           "'end of query'.")
        self.position += 1
        return token

    def is_word(self, word: str, offset: int = 0) -> bool:
        token = self.peek(offset)
        return token is not None and token[0] == "word" and token[1].lower() == word

    def parse(self) -> Query:
        predicates: list[Callable[[Any], bool]] = []
        if self.peek() is not None and not self.is_word("order"):
            predicates.append(self.clause())
            while self.is_word("and"):
                self.take()
                predicates.append(self.clause())
        if self.is_word("or"):
            raise JqlError("Error in the JQL Query: the sandbox supports AND only (OR is not in its JQL subset).")
        order = self.order_by() if self.is_word("order") else []
        if self.peek() is not None:
            raise JqlError(f"Error in the JQL Query: Expecting either 'OR' or 'AND' but got '{self.peek()[1]}'.")
        return Query(lambda issue: all(p(issue) for p in predicates), order, self.warnings)

    def order_by(self) -> list[tuple[str, bool]]:
        self.take()
        if not self.is_word("by"):
            raise JqlError("Error in the JQL Query: Expecting 'by' after 'order'.")
        self.take()
        order = []
        while True:
            kind, name = self.take()
            field = _FIELD_ALIASES.get(name.lower())
            if kind not in ("word", "str") or field not in _ORDERABLE:
                raise JqlError(f"Not able to sort using field '{name}'.")
            descending = False
            if self.is_word("asc") or self.is_word("desc"):
                descending = self.take()[1].lower() == "desc"
            order.append((field, descending))
            if self.peek() != ("punct", ","):
                return order
            self.take()

    def clause(self) -> Callable[[Any], bool]:
        kind, name = self.take()
        if kind not in ("word", "str"):
            raise JqlError(f"Error in the JQL Query: Expecting a field name but got '{name}'.")
        field = _FIELD_ALIASES.get(name.lower())
        if field is None:
            raise JqlError(f"Field '{name}' does not exist or you do not have permission to view it.")
        operator = self.operator()
        if field in _DATE_FIELDS:
            return self.date_clause(field, name, operator)
        if operator not in ("=", "!=", "in", "not in"):
            raise JqlError(f"The operator '{operator}' is not supported by the '{name}' field.")
        values = self.value_list() if operator in ("in", "not in") else [self.value()]
        resolved = {self.resolve(field, name, value) for value in values}
        resolved.discard(None)
        positive = operator in ("=", "in")
        return lambda issue: (_field_value(issue, field) in resolved) == positive

    def operator(self) -> str:
        kind, value = self.take()
        if kind == "op" and value != "~":
            return value
        if kind == "word" and value.lower() == "in":
            return "in"
        if kind == "word" and value.lower() == "not" and self.is_word("in"):
            self.take()
            return "not in"
        if kind == "word" and value.lower() == "is":
            raise JqlError("Error in the JQL Query: the sandbox does not support IS / IS NOT.")
        raise JqlError(f"Error in the JQL Query: Expecting operator but got '{value}'.")

    def value(self) -> str:
        kind, value = self.take()
        if kind not in ("word", "str"):
            raise JqlError(f"Error in the JQL Query: Expecting either a value, list or function but got '{value}'.")
        return value

    def value_list(self) -> list[str]:
        if self.take() != ("punct", "("):
            raise JqlError("Error in the JQL Query: Expecting '(' after IN.")
        values = [self.value()]
        while self.peek() == ("punct", ","):
            self.take()
            values.append(self.value())
        if self.take() != ("punct", ")"):
            raise JqlError("Error in the JQL Query: Expecting ')' to close the list.")
        return values

    def resolve(self, field: str, name: str, value: str) -> str | None:
        catalog = self.catalog
        if field == "project":
            found = catalog.project_keys().get(value.upper())
        elif field == "status":
            found = catalog.status_names().get(value.lower())
        elif field == "issuetype":
            found = catalog.issuetype_names().get(value.lower())
        elif field == "reporter":
            found = catalog.user_ids().get(value.lower())
        else:
            key = value.upper()
            if catalog.issue_exists(key):
                return key
            message = f"An issue with key '{value}' does not exist for field '{name}'."
            if self.strict:
                raise JqlError(message)
            self.warnings.append(message)
            return None
        if found is None:
            message = f"The value '{value}' does not exist for the field '{name}'."
            if self.strict:
                raise JqlError(message)
            self.warnings.append(message)
        return found

    def date_clause(self, field: str, name: str, operator: str) -> Callable[[Any], bool]:
        if operator not in ("=", ">", ">=", "<", "<=", "!="):
            raise JqlError(f"The operator '{operator}' is not supported by the '{name}' field.")
        raw = self.value()
        moment = parse_date(raw, name)
        compare = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, ">": lambda a, b: a > b,
                   ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b}[operator]
        return lambda issue: compare(_field_value(issue, field), moment)


def parse_date(raw: str, name: str, now: datetime | None = None) -> datetime:
    now = now or datetime.now(timezone.utc)
    relative = _RELATIVE.match(raw.strip())
    if relative:
        sign, amount, unit = relative.groups()
        delta = timedelta(**{_UNITS[unit]: int(amount)})
        return now - delta if sign == "-" else now + delta
    for layout in ("%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d", "%Y/%m/%d"):
        try:
            return datetime.strptime(raw.strip(), layout).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    raise JqlError(f"Date value '{raw}' for field '{name}' is invalid. Valid formats include: 'yyyy/MM/dd HH:mm', "
                   f"'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period format e.g. '-5d', '4w 2d'.")


def _field_value(issue: Any, field: str) -> Any:
    return issue.jql_value(field)


def compile_jql(text: str | None, catalog: Catalog, strict: bool = True) -> Query:
    """Parse a JQL string into a predicate over issues, its ORDER BY and any warnings."""
    return _Parser(text or "", catalog, strict).parse()

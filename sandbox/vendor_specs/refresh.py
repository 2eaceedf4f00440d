"""Rebuild a vendored OpenAPI subset from the vendor's full document (a path or a URL).

    python -m sandbox.vendor_specs.refresh jira https://dac-static.atlassian.com/cloud/jira/platform/swagger-v3.v3.json
    python -m sandbox.vendor_specs.refresh leostream path/to/leostream_api.json

The subset keeps every path item the sandbox routes (at least one documented method answered by its Flask app),
every component those reach through ``$ref`` or a discriminator's mapping, the schemas that
``tests/sandbox/openapi_check.py`` names for its adaptations, and the document's header. openapi-core validates
the served traffic against it exactly as against the whole document.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask

from sandbox.jira.app import create_app as create_jira
from sandbox.leostream.app import create_app as create_leostream
from sandbox.vendor_specs import JIRA_SPEC, LEOSTREAM_SPEC

_HEADER = ("openapi", "info", "externalDocs", "servers", "security")
_COMPONENT = re.compile(r"^#/components/([^/]+)/([^/]+)$")
_PLACEHOLDER = re.compile(r"\{[^}]+\}")
_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@dataclass(frozen=True)
class Vendor:
    target: Path
    prefix: str  # where the document's paths sit on the sandbox (Leostream's server "/v1" is at "/rest/v1")
    make_app: Callable[[], Flask]
    extra_schemas: tuple[str, ...]  # used by openapi_check's adaptations, not reached from the kept paths


VENDORS = {
    "jira": Vendor(JIRA_SPEC, "", lambda: create_jira({"JIRA_TOKEN": "refresh"}),
                   ("ErrorCollection", "IssueBean", "JsonTypeBean")),
    "leostream": Vendor(LEOSTREAM_SPEC, "/rest/v1", lambda: create_leostream({"LEOSTREAM_PASSWORD": "refresh",
                                                                             "POLL_SCALE": 0}),
                        ("ErrorShortBasicModel",)),
}


def served_paths(document: dict, app: Flask, prefix: str = "") -> list[str]:
    """The document's path templates that ``app`` routes for at least one of their documented methods."""
    adapter = app.url_map.bind("sandbox.test")
    kept = []
    for template, item in document["paths"].items():
        url = prefix + _PLACEHOLDER.sub("1", template)
        if any(adapter.test(url, method.upper()) for method in item if method in _METHODS):
            kept.append(template)
    return kept


def subset(document: dict, paths: list[str], extra_schemas: tuple[str, ...] = ()) -> dict:
    """``document`` cut to ``paths``, the components they reach and ``extra_schemas`` (raises on a dangling $ref)."""
    components = document.get("components", {})
    wanted: dict[str, set[str]] = {}
    pending = [("schemas", name) for name in extra_schemas]
    pending += _references({path: document["paths"][path] for path in paths})
    while pending:
        kind, name = pending.pop()
        if name in wanted.setdefault(kind, set()):
            continue
        if name not in components.get(kind, {}):
            raise KeyError(f"#/components/{kind}/{name} is referenced but not in the document")
        wanted[kind].add(name)
        pending += _references(components[kind][name])
    kept_components = {kind: {name: value for name, value in entries.items()
                              if kind == "securitySchemes" or name in wanted.get(kind, ())}
                       for kind, entries in components.items()}
    result: dict[str, Any] = {key: document[key] for key in _HEADER if key in document}
    used_tags = {tag for path in paths for operation in document["paths"][path].values()
                 if isinstance(operation, dict) for tag in operation.get("tags", ())}
    if "tags" in document:
        result["tags"] = [tag for tag in document["tags"] if tag["name"] in used_tags]
    result["paths"] = {path: document["paths"][path] for path in paths}
    result["components"] = {kind: entries for kind, entries in kept_components.items() if entries}
    return result


def _references(node: Any) -> list[tuple[str, str]]:
    """Every ``#/components/<kind>/<name>`` under ``node``: ``$ref`` values and discriminator mappings."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and (match := _COMPONENT.match(value)):
                found.append((match[1], match[2]))
            elif key == "mapping" and isinstance(value, dict):
                found += [(m[1], m[2]) for ref in value.values() if isinstance(ref, str)
                          and (m := _COMPONENT.match(ref))]
            else:
                found += _references(value)
    elif isinstance(node, list):
        for value in node:
            found += _references(value)
    return found


def vendored(name: str, document: dict) -> dict:
    """The subset of ``document`` that is vendored for ``name``."""
    vendor = VENDORS[name]
    return subset(document, served_paths(document, vendor.make_app(), vendor.prefix), vendor.extra_schemas)


def dump(document: dict) -> str:
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def _load(source: str) -> dict:
    if re.match(r"^https?://", source):
        with urllib.request.urlopen(source, timeout=60) as response:
            return json.load(response)
    return json.loads(Path(source).read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.vendor_specs.refresh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("vendor", choices=sorted(VENDORS))
    parser.add_argument("source", help="the vendor's full OpenAPI document: a file path or an http(s) URL")
    parser.add_argument("--output", type=Path, help="where to write the subset (default: the vendored file)")
    args = parser.parse_args(argv)
    document = vendored(args.vendor, _load(args.source))
    target = args.output or VENDORS[args.vendor].target
    target.write_text(dump(document))
    print(f"{target}: {len(document['paths'])} paths, info.version {document['info'].get('version')}; "
          f"update the source, version and date in {VENDORS[args.vendor].target.parent / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""sandbox/vendor_specs/refresh.py: the vendored OpenAPI subsets, what a refresh keeps of a document, and where
the checker finds them."""

from __future__ import annotations

import json

import pytest
from flask import Flask, Response

from sandbox.stack.settings import REPO_ROOT
from sandbox.vendor_specs import JIRA_SPEC, LEOSTREAM_SPEC
from sandbox.vendor_specs.refresh import VENDORS, main, served_paths, subset
from tests.sandbox import openapi_check
from tests.sandbox.servers import serving


def test_the_checker_reads_the_vendored_documents_from_inside_the_repository():
    for spec in (openapi_check.JIRA_SPEC, openapi_check.LEOSTREAM_SPEC):
        assert spec in (JIRA_SPEC, LEOSTREAM_SPEC)
        assert spec.resolve().is_relative_to(REPO_ROOT) and spec.is_file()


@pytest.mark.parametrize("vendor", sorted(VENDORS))
def test_refreshing_a_vendored_document_from_itself_changes_nothing(vendor, tmp_path):
    """Every $ref resolves, every kept path is still routed by the sandbox, and nothing was edited by hand."""
    output = tmp_path / "subset.json"
    assert main([vendor, str(VENDORS[vendor].target), "--output", str(output)]) == 0
    assert output.read_text() == VENDORS[vendor].target.read_text()


def test_refresh_reads_the_document_from_a_url(tmp_path):
    def build(url: str) -> Flask:
        app = Flask("vendor")
        app.add_url_rule("/leostream_api.json", view_func=lambda: Response(LEOSTREAM_SPEC.read_bytes(),
                                                                          mimetype="application/json"))
        return app

    output = tmp_path / "subset.json"
    with serving(build) as (url, _):
        assert main(["leostream", f"{url}/leostream_api.json", "--output", str(output)]) == 0
    assert output.read_text() == LEOSTREAM_SPEC.read_text()


def _document() -> dict:
    def schema(ref: str) -> dict:
        return {"content": {"application/json": {"schema": {"$ref": ref}}}}

    return {
        "openapi": "3.0.1", "info": {"title": "t", "version": "1"}, "servers": [{"url": "/v1"}],
        "tags": [{"name": "things"}, {"name": "other"}], "x-narrative": "dropped",
        "paths": {
            "/things/{id}": {"get": {"tags": ["things"], "responses": {"200": schema("#/components/schemas/Thing")}},
                             "delete": {"responses": {"404": {"$ref": "#/components/responses/Gone"}}}},
            "/other": {"get": {"tags": ["other"], "responses": {"200": schema("#/components/schemas/Unused")}}},
        },
        "components": {
            "schemas": {
                "Thing": {"properties": {"part": {"$ref": "#/components/schemas/Part"}}},
                "Part": {"oneOf": [{"$ref": "#/components/schemas/A"}], "discriminator": {
                    "propertyName": "kind", "mapping": {"a": "#/components/schemas/A", "b": "#/components/schemas/B"}}},
                "A": {"type": "object"}, "B": {"type": "object"}, "Unused": {"type": "object"},
                "Error": {"type": "object"},
            },
            "responses": {"Gone": {"description": "gone"}, "Other": {"description": "unused"}},
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
        },
    }


def test_refresh_keeps_the_routed_paths_and_every_component_they_reach():
    app = Flask("sandbox")
    app.add_url_rule("/rest/v1/things/<int:thing_id>", view_func=lambda thing_id: "")
    document = _document()
    paths = served_paths(document, app, "/rest/v1")
    assert paths == ["/things/{id}"]

    kept = subset(document, paths, extra_schemas=("Error",))
    assert list(kept["paths"]) == ["/things/{id}"]
    assert set(kept["paths"]["/things/{id}"]) == {"get", "delete"}  # the whole path item, unrouted methods too
    assert list(kept["components"]["schemas"]) == ["Thing", "Part", "A", "B", "Error"]
    assert kept["components"]["responses"] == {"Gone": {"description": "gone"}}
    assert kept["components"]["securitySchemes"] == document["components"]["securitySchemes"]
    assert kept["tags"] == [{"name": "things"}]
    assert "x-narrative" not in kept and kept["info"] == document["info"]


def test_refresh_refuses_a_reference_the_document_does_not_hold():
    document = _document()
    del document["components"]["schemas"]["B"]
    with pytest.raises(KeyError, match="#/components/schemas/B"):
        subset(document, ["/things/{id}"])


def test_the_readme_gives_each_vendored_document_its_version_and_licence():
    rows = {line.split("|")[1].strip(" `"): line
            for line in (JIRA_SPEC.parent / "README.md").read_text().splitlines() if line.startswith("| `")}
    for spec in (JIRA_SPEC, LEOSTREAM_SPEC):
        info = json.loads(spec.read_text())["info"]
        assert f"`{info['version']}`" in rows[spec.name] and info["license"]["url"] in rows[spec.name]

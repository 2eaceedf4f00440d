"""What the Leostream sandbox's routes share: the broker, request bodies and the broker's answer shapes."""

from __future__ import annotations

import json
from typing import Any

from flask import current_app, jsonify, request

from sandbox.leostream.broker import Broker, BrokerError, bad_data, not_found


def broker() -> Broker:
    return current_app.extensions["leostream_broker"]


def error_body(status: int, message: str) -> dict:
    codes = {401: "UNAUTHORIZED", 403: "INSUFFICIENT_PERMISSIONS", 409: "CONFLICT", 503: "SERVICE_UNAVAILABLE"}
    return {"error_status": codes.get(status, "BAD_DATA" if status < 500 else "SERVICE_UNAVAILABLE"),
            "error_message": message}


def json_object(allow_form: bool = False) -> dict:
    if allow_form and request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return request.form.to_dict()
    raw = request.get_data(cache=True)
    try:
        body = json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError):
        raise bad_data("Invalid JSON in the request body") from None
    if not isinstance(body, dict):
        raise bad_data("The request body must be a JSON object")
    return body


def saved(stored: dict, extra_fields: list[str], warnings: dict | None = None, status: int = 201):
    """The broker's answer to a write: what it stored, its warnings and the fields it ignored."""
    body: dict[str, Any] = {"stored_data": stored}
    if warnings:
        body["warnings"] = warnings
    if extra_fields:
        body["extra_fields"] = extra_fields
    return jsonify(body), status


def unique(items, name: str, exclude_id: int | None = None, key=lambda item: item["name"]) -> None:
    if any(key(item) == name and item["id"] != exclude_id for item in items):
        raise BrokerError(409, "NOT_UNIQUE", "Listed fields should contain only unique values", items=["name"])


def found(item: dict | None) -> dict:
    """The object looked up, or the broker's 404."""
    if item is None:
        raise not_found()
    return item

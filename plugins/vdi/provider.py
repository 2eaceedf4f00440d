"""The Airflow provider: ``get_provider_info()`` is the ``apache_airflow_provider`` entry point (pyproject.toml).

It registers the ``leostream`` connection type and declares its form (Airflow 3.3 reads ``conn-fields`` and
``ui-field-behaviour`` from here without importing the hook). Cheap: no import beyond the standard library.
"""

from __future__ import annotations

DISTRIBUTION = "vdi-studios"

# The leostream connection's defaults, for the form and for LeostreamHook alike.
DEFAULT_TIMEOUT_S = 15
DEFAULT_AUTH_SERVER = "Studio directory"

LEOSTREAM_CONNECTION = {
    "connection-type": "leostream",
    "hook-class-name": "vdi.leostream.LeostreamHook",
    "hook-name": "Leostream Connection Broker",
    "ui-field-behaviour": {
        "hidden-fields": ["schema", "port"],
        "relabeling": {"host": "API URL", "login": "API user", "password": "API password"},
        "placeholders": {"host": "https://leostream.studio.example", "login": "vdi-api"},
    },
    "conn-fields": {
        "verify": {
            "label": "Verify TLS certificate",
            "description": "Check the broker's certificate (turn off only for a self-signed test broker).",
            "schema": {"type": ["boolean", "null"], "default": True},
        },
        "center_name": {
            "label": "AWS center name",
            "description": "The broker's Amazon Web Services center that discovers the desktops; "
                           "empty: the broker's only AWS center.",
            "schema": {"type": ["string", "null"]},
        },
        "auth_server": {
            "label": "Authentication server",
            "description": "The broker's authentication server the desktops' users sign in through.",
            "schema": {"type": ["string", "null"], "default": DEFAULT_AUTH_SERVER},
        },
        "broker_address": {
            "label": "Broker address for desktop agents",
            "description": "Host name or IP (optional :port) the desktops' Leostream agents register with; "
                           "empty: the API URL's host.",
            "schema": {"type": ["string", "null"]},
        },
        "timeout": {
            "label": "Timeout (seconds)",
            "description": "Per-request timeout.",
            "schema": {"type": ["number", "null"], "default": DEFAULT_TIMEOUT_S},
        },
        "retries": {
            "label": "Retries",
            "description": "Resends after a refused connection, 429 or 503 (and 5xx for reads), with exponential "
                           "backoff; empty: the shared policy of vdi.http_retry.",
            "schema": {"type": ["integer", "null"]},
        },
        "retry_backoff": {
            "label": "Retry backoff (seconds)",
            "description": "First backoff, doubling on each retry; empty: the shared policy of vdi.http_retry.",
            "schema": {"type": ["number", "null"]},
        },
    },
}


def get_provider_info() -> dict:
    """Provider info as Airflow's ``provider_info.schema.json`` describes it."""
    return {
        "package-name": DISTRIBUTION,
        "name": "VDI Studios",
        "description": "Jira desktop requests turned into EC2 desktops registered with a Leostream broker.",
        "connection-types": [LEOSTREAM_CONNECTION],
    }

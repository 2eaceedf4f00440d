"""The webhook bridge: verifies Jira's signed webhooks, records them in PostgreSQL, triggers Airflow DAG runs.

``create_app(config=None)`` is the Flask app factory; ``gunicorn -c webhook_bridge/gunicorn.conf.py`` serves it.
``python -m webhook_bridge.relay`` is the relay, the process of its own that triggers Airflow.
"""

from webhook_bridge.app import create_app

__all__ = ["create_app"]

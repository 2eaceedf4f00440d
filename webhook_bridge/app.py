"""The app factory: ``create_app(config=None)`` wires settings, the database pool, the recorder and the metrics.

The app records deliveries and answers; triggering Airflow is the relay's (``python -m webhook_bridge.relay``).
"""

from __future__ import annotations

import atexit
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import psycopg
from flask import Flask
from psycopg_pool import ConnectionPool

from vdi.store import deliveries
from vdi.store.db import database_url
from webhook_bridge import settings
from webhook_bridge.airflow_client import AirflowClient
from webhook_bridge.events import Router
from webhook_bridge.journal import DeliveryJournal
from webhook_bridge.metrics import BridgeMetrics, DatabaseReading
from webhook_bridge.recorder import BatchRecorder
from webhook_bridge.views import bp

log = logging.getLogger("webhook_bridge")


@dataclass
class Bridge:
    """The app's long-lived parts (``app.extensions["webhook_bridge"]``)."""

    secrets: list[str]
    router: Router
    pool: ConnectionPool
    db_timeout_s: float
    airflow: AirflowClient | None
    metrics: BridgeMetrics
    journal: DeliveryJournal
    recorder: BatchRecorder

    def database_ready(self) -> bool:
        try:
            with self.pool.connection(timeout=self.db_timeout_s) as conn:
                conn.execute("SELECT 1 FROM deliveries LIMIT 1")
            return True
        except Exception:
            return False

    def relay_alive(self) -> bool:
        """Whether a relay has beaten recently (it has no port of its own: its beats are in the database)."""
        reading = self.database_reading()
        age = reading.relay.last_beat_age_s if reading else None
        return age is not None and age < deliveries.RELAY_BEAT_STALE_S

    def database_reading(self) -> DatabaseReading | None:
        try:
            with self.pool.connection(timeout=self.db_timeout_s) as conn:
                return DatabaseReading(deliveries.backlog(conn), deliveries.relay_report(conn))
        except Exception:
            return None

    def close(self) -> None:
        """Close the recorder, the journal and the pool (tests; gunicorn workers just exit)."""
        self.recorder.stop()
        self.journal.stop()
        self.pool.close()


def log_to_stderr() -> None:
    """INFO lines of ``webhook_bridge.*`` to stderr, unless logging is configured already (pytest, a host app)."""
    if log.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def create_app(config: Mapping | None = None) -> Flask:
    """A bridge app; ``config`` overrides the settings read from the environment (see ``settings``)."""
    log_to_stderr()
    app = Flask(__name__)
    app.config.update(settings.from_environment())
    app.config.update(config or {})
    cfg = app.config
    if not cfg["WEBHOOK_SECRETS"]:
        log.error("no webhook secret is configured (JIRA_WEBHOOK_SECRET): every delivery will be refused")
    router = Router.from_config(cfg["ROUTES"], cfg["PROJECTS"], cfg["ISSUE_TYPES"])
    url = database_url(cfg["DATABASE_URL"])
    connect_kwargs = {"autocommit": True, "connect_timeout": max(1, int(cfg["DB_TIMEOUT_S"]))}
    # The pool serves the health checks and the metrics; the recorder keeps a connection of its own. A pooled
    # connection is checked before use, so one left broken by a database restart fails no `/readyz`.
    pool = ConnectionPool(url, min_size=1, max_size=max(2, cfg["DB_POOL_MAX"]), kwargs=connect_kwargs,
                          check=ConnectionPool.check_connection, open=False, name="webhook-bridge")
    pool.open(wait=False)
    airflow = None
    if cfg["AIRFLOW_API_URL"]:
        airflow = AirflowClient(cfg["AIRFLOW_API_URL"], cfg["AIRFLOW_USERNAME"] or "", cfg["AIRFLOW_PASSWORD"] or "",
                                timeout_s=cfg["AIRFLOW_TIMEOUT_S"])
    metrics = BridgeMetrics(lambda: bridge.database_reading())  # read at scrape time, once the bridge exists
    bridge = Bridge(list(cfg["WEBHOOK_SECRETS"]), router, pool, cfg["DB_TIMEOUT_S"], airflow, metrics,
                    DeliveryJournal(metrics),
                    BatchRecorder(functools.partial(psycopg.connect, url, **connect_kwargs), cfg["DB_TIMEOUT_S"]))
    atexit.register(bridge.close)
    app.extensions["webhook_bridge"] = bridge
    app.register_blueprint(bp)
    return app

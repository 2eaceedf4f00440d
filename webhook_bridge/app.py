"""The app factory: ``create_app(config=None)`` wires settings, the database pool, Airflow and the dispatcher."""

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
from webhook_bridge.dispatcher import Dispatcher
from webhook_bridge.events import Router
from webhook_bridge.journal import DeliveryJournal
from webhook_bridge.metrics import BridgeMetrics
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
    dispatcher: Dispatcher | None = None

    def database_ready(self) -> bool:
        try:
            with self.pool.connection(timeout=self.db_timeout_s) as conn:
                conn.execute("SELECT 1 FROM deliveries LIMIT 1")
            return True
        except Exception:
            return False

    def backlog(self) -> tuple[int, float] | None:
        try:
            with self.pool.connection(timeout=self.db_timeout_s) as conn:
                reading = deliveries.backlog(conn)
            return reading.pending, reading.oldest_pending_age_s
        except Exception:
            return None

    def close(self) -> None:
        """Stop the dispatcher threads and close the pool (tests; gunicorn workers just exit)."""
        if self.dispatcher is not None:
            self.dispatcher.stop()
        self.recorder.stop()
        self.journal.stop()
        self.pool.close()


def _log_to_stderr() -> None:
    """INFO lines of ``webhook_bridge.*`` to stderr, unless logging is configured already (pytest, a host app)."""
    if log.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def _no_commit_wait(conn: psycopg.Connection) -> None:
    conn.execute("SET synchronous_commit = off")


def create_app(config: Mapping | None = None) -> Flask:
    """A bridge app; ``config`` overrides the settings read from the environment (see ``settings``)."""
    _log_to_stderr()
    app = Flask(__name__)
    app.config.update(settings.from_environment())
    app.config.update(config or {})
    cfg = app.config
    if not cfg["WEBHOOK_SECRETS"]:
        log.error("no webhook secret is configured (JIRA_WEBHOOK_SECRET): every delivery will be refused")
    router = Router.from_config(cfg["ROUTES"], cfg["PROJECTS"], cfg["ISSUE_TYPES"])
    url = database_url(cfg["DATABASE_URL"])
    connect_kwargs = {"autocommit": True, "connect_timeout": max(1, int(cfg["DB_TIMEOUT_S"]))}
    # The pool serves the dispatcher and the health checks; the recorder keeps a connection of its own. The
    # dispatcher's writes need not wait for the WAL flush: one lost in a crash is redone by the next sweep (a
    # delivery triggered twice gets Airflow's 409, "already triggered"). A recorded delivery is always durable.
    pool = ConnectionPool(url, min_size=1, max_size=max(2, cfg["DB_POOL_MAX"]), kwargs=connect_kwargs,
                          configure=_no_commit_wait, open=False, name="webhook-bridge")
    pool.open(wait=False)
    airflow = None
    if cfg["AIRFLOW_API_URL"]:
        airflow = AirflowClient(cfg["AIRFLOW_API_URL"], cfg["AIRFLOW_USERNAME"] or "", cfg["AIRFLOW_PASSWORD"] or "",
                                timeout_s=cfg["AIRFLOW_TIMEOUT_S"])
    metrics = BridgeMetrics(lambda: bridge.backlog())  # read at scrape time, once the bridge exists
    bridge = Bridge(list(cfg["WEBHOOK_SECRETS"]), router, pool, cfg["DB_TIMEOUT_S"], airflow, metrics,
                    DeliveryJournal(metrics),
                    BatchRecorder(functools.partial(psycopg.connect, url, **connect_kwargs), cfg["DB_TIMEOUT_S"]))
    if airflow is not None:
        bridge.dispatcher = Dispatcher(pool, airflow, bridge.journal, threads=cfg["DISPATCHER_THREADS"],
                                       sweep_interval_s=cfg["SWEEP_INTERVAL_S"], retry_base_s=cfg["RETRY_BASE_S"],
                                       retry_max_s=cfg["RETRY_MAX_S"])
        bridge.dispatcher.start()
    else:
        log.error("AIRFLOW_API_URL is not set: deliveries are recorded but not dispatched by this process")
    atexit.register(bridge.close)
    app.extensions["webhook_bridge"] = bridge
    app.register_blueprint(bp)
    return app

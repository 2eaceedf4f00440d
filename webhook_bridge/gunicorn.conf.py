"""gunicorn settings for the bridge: ``gunicorn -c webhook_bridge/gunicorn.conf.py`` (bind with ``--bind``
or ``BRIDGE_BIND``). Workers load the app after the fork, so each has its own pool and recorder connection. They
record and answer only: the relay (``python -m webhook_bridge.relay``) triggers Airflow, in a process of its own.

Workers are gevent's: the bridge waits on sockets (PostgreSQL, Jira's connections) and computes little, and
greenlets wait without the GIL hand-offs that threads pay on every wake-up (more signed deliveries per second
than gthread workers, for less CPU each: bench/RESULTS.md). psycopg cooperates with gevent by itself (3.1.14 and
later). ``BRIDGE_WORKER_CLASS=gthread`` (with ``BRIDGE_THREADS``) goes back to threads.

One worker by default: a gevent worker uses one CPU, and where PostgreSQL (and, locally, Airflow and the relay)
share the machine a second worker mostly competes with them: two answered about as many signed deliveries as
one, for more CPU each (smaller batches: one INSERT in flight per process). Give ``BRIDGE_WORKERS`` one per CPU
the bridge has to itself.
"""

import os
import shutil
import tempfile

wsgi_app = "webhook_bridge:create_app()"
bind = os.environ.get("BRIDGE_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("BRIDGE_WORKERS", "1"))
worker_class = os.environ.get("BRIDGE_WORKER_CLASS", "gevent")
threads = int(os.environ.get("BRIDGE_THREADS", "8"))  # gthread only
worker_connections = 1000  # gevent: connections per worker
# Jira gives up after ~20 s; a request that takes longer is a stuck worker.
timeout = 30
graceful_timeout = 20
keepalive = 5
# One structured line per delivery comes from the app (create_app sends it to stderr); the access log would
# repeat it. No logconfig either: with one, gunicorn formats access-log atoms for every request.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("BRIDGE_LOG_LEVEL", "info")
# Counters and histograms summed over every worker: prometheus_client's multiprocess mode. The variable
# must be set before a worker imports prometheus_client, i.e. here in the master.
_CREATED_METRICS_DIR = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _CREATED_METRICS_DIR = tempfile.mkdtemp(prefix="vdi-bridge-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _CREATED_METRICS_DIR


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _CREATED_METRICS_DIR:
        shutil.rmtree(_CREATED_METRICS_DIR, ignore_errors=True)

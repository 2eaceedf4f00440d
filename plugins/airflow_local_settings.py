"""Airflow's local settings hook, found on the plugins folder's path: Airflow imports it once in each of its
processes at start-up (a studio's own ``airflow_local_settings`` in ``$AIRFLOW_HOME/config`` comes first on the
path and replaces this one; it can import this module to keep what it does).

It defines no policy. It imports what the VDI tasks use, so that the scheduler has it before it forks the
LocalExecutor's workers (and a Celery worker before it forks its task processes): every task process, forked
from those, starts with psycopg, atlassian, boto3 and the Amazon provider's hook already imported instead of
importing them again (seconds per task on a busy machine; see bench/RESULTS.md). The DAG processor and the
triggerer, which runs the waits' checks, start with them too. Airflow's own task machinery is left as it is.
"""

import sys

try:
    import atlassian  # noqa: F401  (the Jira client)
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook  # noqa: F401  (boto3, botocore)

    import vdi.provision  # noqa: F401  (psycopg, the store, the clients' modules)
    import vdi.userdata  # noqa: F401  (jinja2, the playbook bundle)
    import vdi.waits  # noqa: F401
except ImportError as error:
    # Let through only a module in the middle of its own import: a vdi module that imports Airflow before it
    # defines its names (vdi.leostream) brings this module in then, and its process imports the rest itself.
    # Any other failure (a missing or broken dependency) is real and stops the process's start.
    if not getattr(getattr(sys.modules.get(error.name or ""), "__spec__", None), "_initializing", False):
        raise

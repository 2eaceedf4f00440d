"""VDI Studios domain package: request model, store, Jira, Leostream, EC2 and user data.

Airflow puts ``plugins/`` on ``sys.path``, so DAGs and the webhook bridge import this as ``vdi``.
"""

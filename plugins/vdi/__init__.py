"""VDI Studios domain package: request model, store, Jira, Leostream, EC2 and user data.

Installed into the venv as the ``vdi-studios`` distribution, which is also an Airflow provider (``vdi.provider``
registers the ``leostream`` connection type); DAGs, the webhook bridge and the sandboxes import it as ``vdi``.
"""

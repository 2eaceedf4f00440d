"""The scheduled reconcile (``vdi_reconcile``): deliveries that did not go through, webhooks that never came,
drift between the database, EC2, the broker and Jira, and requests stuck past their deadline. One module per
part, each callable without Airflow (clients passed in), each honouring ``dry_run`` and a cap on fixes per run."""

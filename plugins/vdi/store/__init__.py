"""The app's PostgreSQL store, shared by the webhook bridge and the DAGs."""

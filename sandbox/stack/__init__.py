"""The local stack behind ``make run`` / ``make stop``: embedded PostgreSQL and Airflow under supervisord."""

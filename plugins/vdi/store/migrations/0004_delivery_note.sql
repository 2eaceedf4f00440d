-- What started a routed delivery's DAG run, in words (e.g. "VDI-12 moved to Approved in Jira"): the relay sends
-- it as the run's note, which the Airflow UI shows beside the run.
ALTER TABLE deliveries ADD COLUMN note text;

-- Dead letters and the reconcile's requeues (vdi.store.deliveries holds the SQL). A delivery the dispatcher cannot
-- ever trigger (its route's DAG does not exist) or that Airflow refused after VDI_DELIVERY_REQUEUE_MAX requeues is
-- `dead_lettered`: final, kept for people to read until pruned. `requeues` counts the reconcile's requeues of a
-- failed delivery (an operator's requeue does not count).
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('pending', 'dispatched', 'ignored', 'failed', 'dead_lettered'));
ALTER TABLE deliveries ADD COLUMN requeues integer NOT NULL DEFAULT 0 CHECK (requeues >= 0);
-- The few deliveries given up on, read by the reconcile and counted by /metrics at every scrape. Recording a
-- delivery (pending or ignored) adds nothing to it.
CREATE INDEX deliveries_given_up_idx ON deliveries (status) WHERE status IN ('failed', 'dead_lettered');

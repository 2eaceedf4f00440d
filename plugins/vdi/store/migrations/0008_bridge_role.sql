-- The webhook bridge and its relay connect as a role of their own that may touch only their tables: deliveries
-- (record, claim, mark; vdi.store.deliveries), relay_heartbeats and relay_trigger_attempts (the relay's beats and
-- counts, which /readyz and /metrics read). Nothing else: desktop_requests, request_events, the removals and the
-- reconcile's tables stay the DAGs'. vdi_grant_bridge(role) grants exactly that, and is run again by a migration
-- that gives the bridge a new table. It runs here for the role vdi_bridge when it exists (the local stack creates
-- it before migrating); for a role created later, the schema's owner runs SELECT vdi_grant_bridge('<role>').
CREATE FUNCTION vdi_grant_bridge(bridge_role name) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON deliveries TO %I', bridge_role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON relay_heartbeats TO %I', bridge_role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON relay_trigger_attempts TO %I', bridge_role);
END;
$$;
REVOKE EXECUTE ON FUNCTION vdi_grant_bridge(name) FROM PUBLIC;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vdi_bridge') THEN
        PERFORM vdi_grant_bridge('vdi_bridge');
    END IF;
END;
$$;

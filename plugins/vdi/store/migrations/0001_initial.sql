-- Deliveries: the webhook bridge's inbox, one row per Jira delivery (vdi.store.deliveries holds its SQL).
-- A row is written once, in the transaction that answers Jira; the bridge's dispatcher then triggers
-- dag_id/dag_run_id and marks it dispatched (or failed for good); pending rows wait for next_attempt_at.
CREATE TABLE deliveries (
    delivery_id      text PRIMARY KEY,          -- X-Atlassian-Webhook-Identifier, or body-sha256-<hex>
    id_from_body     boolean NOT NULL DEFAULT false,
    received_at      timestamptz NOT NULL DEFAULT now(),
    event            text NOT NULL,             -- webhookEvent
    issue_key        text,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'dispatched', 'ignored', 'failed')),
    reason           text,                      -- why ignored or failed
    payload          jsonb NOT NULL,
    dag_id           text,
    dag_run_id       text,
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    dispatched_at    timestamptz
);
CREATE INDEX deliveries_pending_idx ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_issue_idx ON deliveries (issue_key);

-- Desktop requests: one per Jira issue (the idempotency key of a request).
CREATE TABLE desktop_requests (
    request_id   uuid PRIMARY KEY,
    issue_key    text NOT NULL UNIQUE,
    project_key  text NOT NULL,
    desktop_user text,
    bundle       text,
    os           text,
    state        text NOT NULL
                 CHECK (state IN ('received', 'in_progress', 'ready', 'failed', 'rejected', 'removing', 'removed')),
    step         text,
    owner_run_id text,          -- the DAG run working on it: a rerun of that run may resume
    instance_id  text,
    detail       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX desktop_requests_state_idx ON desktop_requests (state);
CREATE INDEX desktop_requests_user_idx ON desktop_requests (desktop_user);

-- Request events: an append-only log of every step's outcome.
CREATE TABLE request_events (
    event_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id  uuid NOT NULL REFERENCES desktop_requests (request_id),
    step        text NOT NULL,
    outcome     text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb,
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX request_events_request_idx ON request_events (request_id, event_id);

CREATE FUNCTION request_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'request_events is append-only (% refused)', TG_OP;
END;
$$;
CREATE TRIGGER request_events_append_only
    BEFORE UPDATE OR DELETE ON request_events
    FOR EACH ROW EXECUTE FUNCTION request_events_append_only();

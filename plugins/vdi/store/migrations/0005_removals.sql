-- Desktop removals: one per Jira *Desktop Removal* ticket (vdi_deprovision; vdi.store.removals holds its SQL).
-- Only the run that owns a removal (owner_run_id) moves it on, as for requests (vdi.states.refusal). A removal
-- names the desktop requests it takes down in targets; each of those is marked with its removal_key while the
-- removal holds it (state 'removing', then 'removed'), so a second removal or a provisioning run leaves it alone.
CREATE TABLE desktop_removals (
    removal_id   uuid PRIMARY KEY,
    issue_key    text NOT NULL UNIQUE,
    project_key  text NOT NULL,
    state        text NOT NULL CHECK (state IN ('received', 'in_progress', 'failed', 'removed')),
    step         text,
    owner_run_id text,
    targets      text[] NOT NULL DEFAULT '{}',  -- issue keys of the desktop requests it removes
    detail       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX desktop_removals_state_idx ON desktop_removals (state);

-- Removal events: an append-only log of every removal step's outcome (a removed desktop's own outcome goes to
-- request_events).
CREATE TABLE removal_events (
    event_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    removal_id  uuid NOT NULL REFERENCES desktop_removals (removal_id),
    step        text NOT NULL,
    outcome     text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb,
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX removal_events_removal_idx ON removal_events (removal_id, event_id);

CREATE FUNCTION removal_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'removal_events is append-only (% refused)', TG_OP;
END;
$$;
CREATE TRIGGER removal_events_append_only
    BEFORE UPDATE OR DELETE ON removal_events
    FOR EACH ROW EXECUTE FUNCTION removal_events_append_only();

-- The removal (its ticket's key) that holds a desktop request being removed or removed.
ALTER TABLE desktop_requests ADD COLUMN removal_key text;

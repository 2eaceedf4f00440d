-- The scheduled reconcile (vdi_reconcile; vdi.store.reconcile holds its SQL). A finding is one thing out of
-- step (kind + subject, e.g. an orphan instance by its id): reported when first seen, then only counted while it
-- stays, resolved when it is fixed or no longer seen; seen again later, it is reported again.
CREATE TABLE reconcile_findings (
    kind         text NOT NULL,
    subject      text NOT NULL,
    issue_key    text,
    detail       jsonb NOT NULL DEFAULT '{}'::jsonb,
    action       text NOT NULL,             -- what the reconcile did or would do: reported, fixed, deferred...
    first_seen   timestamptz NOT NULL DEFAULT now(),
    last_seen    timestamptz NOT NULL DEFAULT now(),
    resolved_at  timestamptz,
    PRIMARY KEY (kind, subject)
);
CREATE INDEX reconcile_findings_open_idx ON reconcile_findings (kind) WHERE resolved_at IS NULL;

-- One row per reconcile run that changed or reported something (dry runs write nothing): its summary.
CREATE TABLE reconcile_runs (
    run_id       text PRIMARY KEY,
    finished_at  timestamptz NOT NULL DEFAULT now(),
    summary      jsonb NOT NULL
);

-- The relay (python -m webhook_bridge.relay; vdi.store.deliveries holds its SQL). Each relay process beats every
-- few seconds and adds its trigger attempts to the shared counts: the bridge's /readyz reads the beats, its
-- /metrics the counts. A relay that stops cleanly removes its beat; beats a day old are removed by the next one.
CREATE TABLE relay_heartbeats (
    relay_id  text PRIMARY KEY,            -- host:pid
    beat_at   timestamptz NOT NULL
);

CREATE TABLE relay_trigger_attempts (
    outcome   text PRIMARY KEY,            -- created, already_triggered, retry, refused
    attempts  bigint NOT NULL
);

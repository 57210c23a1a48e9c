-- Do not disturb: one row per user whose notifications are paused, until `until` (NULL:
-- until resumed). A read model like room_mutes, kept by the same append statement; expiry
-- needs no writer (every read leaves out rows whose `until` has passed by the database's
-- clock) and the sweep deletes expired rows (the log keeps every event).
CREATE TABLE notification_pauses (
    app_id     text NOT NULL,
    client_id  text NOT NULL,
    paused_at  timestamptz NOT NULL,
    position   bigint NOT NULL,
    until      timestamptz,
    PRIMARY KEY (app_id, client_id)
);

-- The sweep finds expired rows in order of their end, reading only timed pauses.
CREATE INDEX notification_pauses_until_idx ON notification_pauses (until) WHERE until IS NOT NULL;

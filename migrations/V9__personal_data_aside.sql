-- Personal data leaves the immutable log (docs/privacy.md). An event's address, port and
-- user agent identify a person and must be erasable on request and expire after a
-- retention window; the log's rows can do neither. They live in this side table, keyed by
-- the event's position; the facts (id, type, stream, version, room, actor, request id,
-- time) stay in `events`, untouched.
--
-- A row is never deleted: erasure and retention clear its fields and say which one did,
-- so the audit can tell "erased" or "expired" from "never recorded".
CREATE TABLE event_personal_data (
    position     bigint PRIMARY KEY,
    recorded_at  timestamptz NOT NULL,
    address      text,
    port         integer,
    user_agent   text,
    removed      text CHECK (removed IN ('erased', 'expired')),
    CONSTRAINT event_personal_data_removed_is_empty
        CHECK (removed IS NULL OR (address IS NULL AND port IS NULL AND user_agent IS NULL))
);
-- Retention's batches: the oldest rows still holding data, and nothing else.
CREATE INDEX event_personal_data_retention_idx ON event_personal_data (recorded_at)
    WHERE removed IS NULL;

-- This release's append sets the fields aside itself, in its single statement
-- (`src/store/stream.rs`). Any other writer that still puts them into `metadata` (the
-- previous release mid-deploy or after a rollback, a hand-written INSERT) goes through
-- this trigger, which moves them aside before the row exists; the WHEN clause keeps it from
-- running at all for rows without them. `position` (identity) and `recorded_at` are
-- already set when a BEFORE trigger runs. No foreign key: the side row and the event
-- commit or fail in one statement, and an FK check per append would cost the write path
-- for nothing.
CREATE FUNCTION events_set_personal_data_aside() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(NEW.metadata->>'address', NEW.metadata->>'port',
                NEW.metadata->>'userAgent') IS NOT NULL THEN
        INSERT INTO event_personal_data (position, recorded_at, address, port, user_agent)
        VALUES (NEW.position, NEW.recorded_at, NEW.metadata->>'address',
                CASE WHEN jsonb_typeof(NEW.metadata->'port') = 'number'
                     THEN (NEW.metadata->>'port')::integer END,
                NEW.metadata->>'userAgent');
    END IF;
    NEW.metadata := NEW.metadata - ARRAY['address', 'port', 'userAgent'];
    RETURN NEW;
END $$;

CREATE TRIGGER events_personal_data_aside
    BEFORE INSERT ON events
    FOR EACH ROW WHEN (NEW.metadata ?| ARRAY['address', 'port', 'userAgent'])
    EXECUTE FUNCTION events_set_personal_data_aside();

-- The one audited exception to "rows are never changed": what was rewritten, by which
-- migration, when and why.
CREATE TABLE immutability_exceptions (
    migration       text PRIMARY KEY,
    rows_rewritten  bigint NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    reason          text NOT NULL
);

-- Existing events: copy their personal fields aside, then strip them from the log. Only
-- the owner may disable a trigger, and the disabling is part of this migration's
-- transaction: no other session ever sees `events` without its guard (ALTER TABLE holds
-- the table's exclusive lock until COMMIT).
ALTER TABLE events DISABLE TRIGGER events_no_update_or_delete;

WITH personal AS (
    SELECT position, recorded_at, metadata->>'address' AS address,
           CASE WHEN jsonb_typeof(metadata->'port') = 'number'
                THEN (metadata->>'port')::integer END AS port,
           metadata->>'userAgent' AS user_agent
    FROM events
    WHERE metadata ?| ARRAY['address', 'port', 'userAgent']
),
kept AS (
    INSERT INTO event_personal_data (position, recorded_at, address, port, user_agent)
    SELECT position, recorded_at, address, port, user_agent FROM personal
    WHERE coalesce(address, port::text, user_agent) IS NOT NULL
),
rewritten AS (
    UPDATE events SET metadata = metadata - ARRAY['address', 'port', 'userAgent']
    WHERE position IN (SELECT position FROM personal)
    RETURNING 1
)
INSERT INTO immutability_exceptions (migration, rows_rewritten, reason)
SELECT 'V9__personal_data_aside', count(*),
       'address, port and userAgent moved from events.metadata to event_personal_data, '
       'so that they can be erased and expire (issue 13, docs/privacy.md)'
FROM rewritten;

ALTER TABLE events ENABLE TRIGGER events_no_update_or_delete;

-- Timed mutes: a mute ends at `until` (NULL: forever). Expiry needs no writer: every read
-- leaves out rows whose `until` has passed by the database's clock, and a periodic sweep
-- deletes them (the log keeps every event).
ALTER TABLE room_mutes ADD COLUMN until timestamptz;

-- "Who muted this room" now also asks whether each mute is still in force: with `until`
-- in the index entries the dispatcher's check stays an index-only lookup. Same name, so
-- plans and documentation keep reading the same.
DROP INDEX room_mutes_room_client_idx;
CREATE INDEX room_mutes_room_client_idx ON room_mutes (app_id, room_id, client_id) INCLUDE (until);

-- The sweep finds expired rows in order of their end, reading only timed mutes.
CREATE INDEX room_mutes_until_idx ON room_mutes (until) WHERE until IS NOT NULL;

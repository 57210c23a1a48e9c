-- Support queries on the log, each served by an index instead of a scan of every event.
-- Audit pages run in the global reading order (transaction_id, position), so the indexes
-- end in it: a filtered page is read off the index in order and stops at its limit.

-- One user's history (and the as-of fold, which also uses events_stream_version_key).
CREATE INDEX events_app_stream_idx ON events (app_id, stream_id, transaction_id, position);
-- Everything that happened to one room.
CREATE INDEX events_app_room_idx ON events (app_id, (data->>'room'), transaction_id, position);
-- A time window of one app.
CREATE INDEX events_app_recorded_idx ON events (app_id, recorded_at);

-- A rebuild records the exact global-order cursor it read the log up to.
ALTER TABLE projection_checkpoints ADD COLUMN transaction_id xid8;

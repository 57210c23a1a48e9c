-- "Who muted this room" pages through a room's muters by user id, and checks a batch of
-- users against one room: both want the user id inside the room's index entries, so a page
-- is a range scan and a check an index-only lookup, with no sort of the room's muters. The
-- old index is its prefix and would only cost every mute a second index write.
--
-- Migrations run in a transaction, so this builds the index under a write lock on
-- room_mutes. On a large live table build it first without one:
--   CREATE INDEX CONCURRENTLY room_mutes_room_client_idx ON room_mutes (app_id, room_id, client_id);
-- and this migration then only drops the old index.
CREATE INDEX IF NOT EXISTS room_mutes_room_client_idx ON room_mutes (app_id, room_id, client_id);
DROP INDEX IF EXISTS room_mutes_room_idx;

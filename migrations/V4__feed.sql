-- The change feed reads one app's events in the global reading order
-- (transaction_id, position), from any point: an index in that order per app serves it (and
-- audit pages without other filters) with a seek and an ordered scan that stops at the
-- page's end, instead of a walk of every app's events.
--
-- Migrations run in a transaction, so this builds the index under a lock that holds
-- appends off. On a large live log build it first without one:
--   CREATE INDEX CONCURRENTLY events_app_transaction_idx ON events (app_id, transaction_id, position);
-- and this migration then finds it in place.
CREATE INDEX IF NOT EXISTS events_app_transaction_idx ON events (app_id, transaction_id, position);

-- A rebuild records the exact snapshot cursor its read model reflects: transaction_id
-- holds the snapshot's xmax, xip the transactions that were still running in it.
ALTER TABLE projection_checkpoints ADD COLUMN IF NOT EXISTS xip xid8[];

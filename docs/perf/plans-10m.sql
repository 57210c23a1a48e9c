-- EXPLAIN (ANALYZE, BUFFERS) of every statement behind the reads measured by
-- docs/perf/read-latency-10m.sh, on a log seeded by docs/ops/seed-log.sh and rebuilt:
--   psql -d chatprefs_bench10m -f docs/perf/plans-10m.sql
-- The service prepares each statement once per connection (prepare_cached), so after five
-- executions PostgreSQL may switch it to a generic plan that cannot see the parameters'
-- values. Each statement is therefore explained as a prepared statement twice: with the
-- parameters' values planned in (force_custom_plan, the first executions) and generic
-- (force_generic_plan, what a long-lived connection can end up with). Statement texts are
-- those in src/store/{audit,muters,projection,directory}.rs.
-- Override with -v user=… -v room=… -v as_of=… (for a smaller seed, say).
\if :{?user} \else \set user 'user-4242' \endif
\if :{?room} \else \set room 'room-7' \endif
\if :{?as_of} \else \set as_of '2026-01-01T13:53:20Z' \endif
\pset pager off
\timing off

-- Cursors for the second pages: the last entry of a first page, as the service answers it.
SELECT position AS user_after FROM (
    SELECT position, transaction_id FROM events WHERE app_id = 'bench' AND stream_id = :'user'
    ORDER BY transaction_id, position LIMIT 50) p ORDER BY transaction_id DESC, position DESC LIMIT 1 \gset
SELECT position AS room_after FROM (
    SELECT position, transaction_id FROM events WHERE app_id = 'bench' AND data->>'room' = :'room'
    ORDER BY transaction_id, position LIMIT 100) p ORDER BY transaction_id DESC, position DESC LIMIT 1 \gset
-- mutes/check: 500 who muted the room (every other of its first 1,000 by id), 500 random users.
SELECT array_agg(id)::text AS check_ids FROM (
    SELECT client_id AS id FROM (
        SELECT client_id, row_number() OVER (ORDER BY client_id) AS n FROM room_mutes
        WHERE app_id = 'bench' AND room_id = :'room' ORDER BY client_id LIMIT 1000) m WHERE n % 2 = 1
    UNION ALL
    SELECT 'user-' || (1 + floor(random() * 100000))::int FROM generate_series(1, 500)) ids \gset
-- GET /me authenticates with a real token: issue one for the user directly.
INSERT INTO tokens (token_sha256, app_id, client_id, expires_at)
VALUES (sha256('plans-10m'::bytea), 'bench', :'user', now() + interval '1 day')
ON CONFLICT (token_sha256) DO UPDATE SET expires_at = excluded.expires_at;
SELECT client_key, encode(api_key_sha256, 'hex') AS api_hash FROM apps WHERE app_id = 'bench' \gset

PREPARE audit_client AS
    SELECT position, event_id, event_type, app_id, stream_id, data->>'room' AS room, metadata, recorded_at
    FROM events WHERE app_id = $1 AND stream_id = $2 ORDER BY transaction_id, position LIMIT $3;
PREPARE audit_client_after AS
    SELECT position, event_id, event_type, app_id, stream_id, data->>'room' AS room, metadata, recorded_at
    FROM events WHERE app_id = $1 AND stream_id = $2
      AND (transaction_id, position) > (SELECT transaction_id, position FROM events WHERE position = $3)
    ORDER BY transaction_id, position LIMIT $4;
PREPARE audit_room AS
    SELECT position, event_id, event_type, app_id, stream_id, data->>'room' AS room, metadata, recorded_at
    FROM events WHERE app_id = $1 AND data->>'room' = $2 ORDER BY transaction_id, position LIMIT $3;
PREPARE audit_room_after AS
    SELECT position, event_id, event_type, app_id, stream_id, data->>'room' AS room, metadata, recorded_at
    FROM events WHERE app_id = $1 AND data->>'room' = $2
      AND (transaction_id, position) > (SELECT transaction_id, position FROM events WHERE position = $3)
    ORDER BY transaction_id, position LIMIT $4;
PREPARE is_cursor_of AS SELECT 1 FROM events WHERE position = $1 AND app_id = $2;
PREPARE find_client AS
    SELECT c.client_id, c.nickname, c.email, c.avatar_url, c.last_login_ms, c.notification_enabled
    FROM clients c WHERE c.app_id = $1 AND c.client_id = $2;
PREPARE stream_until AS
    SELECT position, event_type, data FROM events
    WHERE app_id = $1 AND stream_type = $2 AND stream_id = $3 AND recorded_at <= $4
    ORDER BY stream_version;
PREPARE muted_among AS
    SELECT ARRAY(SELECT m.client_id
                 FROM unnest($3::text[]) AS wanted(client_id)
                 JOIN room_mutes m ON m.app_id = $1 AND m.room_id = $2
                                  AND m.client_id = wanted.client_id)
    FROM rooms r WHERE r.app_id = $1 AND r.room_id = $2;
PREPARE muters_page AS
    SELECT m.client_id, m.muted_at
    FROM rooms r
    LEFT JOIN LATERAL (
        SELECT client_id, muted_at FROM room_mutes
        WHERE app_id = r.app_id AND room_id = r.room_id AND client_id > $3
        ORDER BY client_id LIMIT $4
    ) m ON true
    WHERE r.app_id = $1 AND r.room_id = $2
    ORDER BY m.client_id;
PREPARE app_by_api_key AS SELECT app_id FROM apps WHERE api_key_sha256 = $1;
PREPARE authenticate_client AS
    SELECT a.app_id, c.client_id, c.nickname, c.email, c.avatar_url, c.last_login_ms, c.notification_enabled
    FROM apps a
    LEFT JOIN tokens t ON t.token_sha256 = $2 AND t.app_id = a.app_id
                      AND t.revoked_at IS NULL AND t.expires_at > now()
    LEFT JOIN clients c ON c.app_id = t.app_id AND c.client_id = t.client_id
    WHERE a.client_key = $1;
PREPARE muted_rooms AS
    SELECT room_id FROM room_mutes WHERE app_id = $1 AND client_id = $2 ORDER BY position;

\echo '#################### plan_cache_mode = force_custom_plan'
SET plan_cache_mode = force_custom_plan;
\ir plans-10m-explain.sql
\echo '#################### plan_cache_mode = force_generic_plan'
SET plan_cache_mode = force_generic_plan;
\ir plans-10m-explain.sql

DELETE FROM tokens WHERE token_sha256 = sha256('plans-10m'::bytea);

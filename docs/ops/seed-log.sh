#!/usr/bin/env bash
# Fills a chatprefs database with a synthetic log shaped like the rebuild yardstick's
# (../shared/bench/rebuild-yardstick.sh): EVENTS events, 80% RoomMuted / 20% RoomUnmuted,
# round-robin over USERS users, ROOMS random rooms; plus the app, users and rooms the
# events name, so audit and as-of answers can be measured against it. The read model is
# left empty: `chatprefs rebuild` builds it. Prints the app's API key as JSON.
#   env: DATABASE_URL (postgres://postgres@127.0.0.1:5432/chatprefs_bench), CHATPREFS
#        (target/release/chatprefs), EVENTS (2000000) USERS (100000) ROOMS (1000)
set -euo pipefail
url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/chatprefs_bench}
bin=${CHATPREFS:-target/release/chatprefs}
events=${EVENTS:-2000000}; users=${USERS:-100000}; rooms=${ROOMS:-1000}
db=${url##*/}
psql -qAt -d "${url%/*}/postgres" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
DATABASE_URL=$url RUST_LOG=warn "$bin" app create bench --json
psql -q -d "$url" -v events="$events" -v users="$users" -v rooms="$rooms" >/dev/null <<'SQL'
INSERT INTO clients (app_id, client_id, nickname)
SELECT 'bench', 'user-' || g, 'nick' || g FROM generate_series(1, :users) g;
INSERT INTO rooms (app_id, room_id, name)
SELECT 'bench', 'room-' || g, 'Room ' || g FROM generate_series(1, :rooms) g;
SELECT setseed(0.42);
INSERT INTO events (event_id, app_id, stream_type, stream_id, stream_version, event_type, data, metadata, recorded_at)
SELECT gen_random_uuid(), 'bench', 'user_preferences', 'user-' || ((g - 1) % :users + 1), (g - 1) / :users + 1,
       CASE WHEN random() < 0.8 THEN 'RoomMuted' ELSE 'RoomUnmuted' END,
       jsonb_build_object('room', 'room-' || (1 + floor(random() * :rooms))::int),
       jsonb_build_object('actor', jsonb_build_object('kind', 'client', 'id', 'user-' || ((g - 1) % :users + 1)),
                          'requestId', gen_random_uuid()::text, 'address', '127.0.0.1', 'port', 50000, 'userAgent', 'yardstick/1.0'),
       timestamptz '2026-01-01 00:00:00+00' + g * interval '10 ms'
FROM generate_series(1, :events) g;
VACUUM ANALYZE;
SQL

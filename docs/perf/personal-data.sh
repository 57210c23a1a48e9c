#!/usr/bin/env bash
# Issue 13's costs on a throwaway database (dropped at the end):
#  1. the append with personal data, three ways, in alternating rounds in one sitting:
#     `in_metadata` keeps it in `events.metadata` (today's main: the V9 trigger disabled),
#     `cte` sets it aside in the append's own statement (this release's `stream.rs`),
#     `trigger` leaves it to the V9 trigger (the previous release on the new schema).
#     First 20,000 appends in one statement, rolled back (EXPLAIN ANALYZE: the database's
#     CPU, no commit), then single-row commits through pgbench (what a request pays, fsync
#     included). The bare statement is the worst case: the service's write path adds HTTP,
#     authentication, the load and the read model around it.
#  2. `chatprefs erase` of a user with 10,000 events.
#   usage: docs/perf/personal-data.sh CHATPREFS_BINARY
#   env:   ROUNDS (3) SECONDS_PER_RUN (10) CLIENTS (4) EVENTS (10000)
set -euo pipefail
bin=$1
rounds=${ROUNDS:-3}; secs=${SECONDS_PER_RUN:-10}; clients=${CLIENTS:-4}; events=${EVENTS:-10000}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
db=chatprefs_personal_data_perf
export DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$db"
dir=$(mktemp -d)
cleanup() { psql -qAt -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
psql -qAt -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
RUST_LOG=warn "$bin" migrate >/dev/null
RUST_LOG=warn "$bin" app create perf >/dev/null

meta="'{\"actor\":{\"kind\":\"client\",\"id\":\"u1\"},\"requestId\":\"0d9c6f0e-2a41-4f7e-9b55-3c1f1e9a7d10\",\"address\":\"203.0.113.9\",\"port\":51234,\"userAgent\":\"MobileSDK/3.2\"}'::jsonb"
cols="event_id, app_id, stream_type, stream_id, stream_version, event_type, data, metadata"
vals="gen_random_uuid(), 'perf', 'user_preferences', gen_random_uuid()::text, 1, 'RoomMuted', '{\"room\":\"r1\"}'"
# $1: how many rows; the statement each side runs.
statement() {
    local side=$1 rows=$2
    case $side in
        in_metadata | trigger)
            echo "INSERT INTO events ($cols) SELECT $vals, $meta FROM generate_series(1, $rows)" ;;
        cte)
            echo "WITH appended AS (
                    INSERT INTO events ($cols)
                    SELECT $vals, $meta - ARRAY['address', 'port', 'userAgent'] FROM generate_series(1, $rows)
                    RETURNING position, recorded_at),
                  set_aside AS (
                    INSERT INTO event_personal_data (position, recorded_at, address, port, user_agent)
                    SELECT position, recorded_at, $meta->>'address', ($meta->>'port')::integer, $meta->>'userAgent'
                    FROM appended)
                  SELECT count(*) FROM appended" ;;
    esac
}
toggle() { [ "$1" = in_metadata ] && echo DISABLE || echo ENABLE; }
sides="in_metadata cte trigger"
for round in $(seq "$rounds"); do
    for side in $sides; do
        plan=$(psql -qAt -d "$db" -c "BEGIN" -c "ALTER TABLE events $(toggle "$side") TRIGGER events_personal_data_aside" \
                    -c "EXPLAIN (ANALYZE, FORMAT JSON) $(statement "$side" 20000)" -c "ROLLBACK" | jq -c '.[0]')
        printf '{"round":%d,"side":"%s","rows":20000,"ms":%s,"triggerMs":%s}\n' "$round" "$side" \
            "$(jq '."Execution Time"' <<<"$plan")" \
            "$(jq '[.Triggers[]? | select(."Trigger Name" == "events_personal_data_aside") | .Time] | add // 0' <<<"$plan")"
    done
done
for side in $sides; do echo "$(statement "$side" 1);" >"$dir/$side.sql"; done
for round in $(seq "$rounds"); do
    for side in $sides; do
        psql -qAt -d "$db" -c "ALTER TABLE events $(toggle "$side") TRIGGER events_personal_data_aside"
        tps=$(pgbench -n -c "$clients" -j "$clients" -T "$secs" -f "$dir/$side.sql" "$db" 2>/dev/null \
              | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
        printf '{"round":%d,"side":"%s","load":"%s","commitsPerSecond":%s}\n' "$round" "$side" \
            "$(cut -d' ' -f1 /proc/loadavg)" "$tps"
    done
done
psql -qAt -d "$db" -c "ALTER TABLE events ENABLE TRIGGER events_personal_data_aside"

psql -qAt -d "$db" -c "
    INSERT INTO clients (app_id, client_id, nickname, email) VALUES ('perf', 'heavy', 'Heavy User', 'heavy@example.test');
    INSERT INTO events ($cols)
    SELECT gen_random_uuid(), 'perf', 'user_preferences', 'heavy', v,
           CASE WHEN v % 2 = 1 THEN 'RoomMuted' ELSE 'RoomUnmuted' END, '{\"room\":\"r1\"}',
           jsonb_build_object('actor', jsonb_build_object('kind', 'client', 'id', 'heavy'),
                              'requestId', gen_random_uuid()::text, 'address', '198.51.100.7',
                              'port', 40000 + v % 1000, 'userAgent', 'HeavyPhone/1.0')
    FROM generate_series(1, $events) AS v;"
psql -qAt -d "$db" -c "VACUUM ANALYZE events" -c "VACUUM ANALYZE event_personal_data"
total=$(psql -qAt -d "$db" -c "SELECT count(*) FROM events")
start=$(date +%s.%N)
RUST_LOG=warn "$bin" erase --app perf --client heavy >&2
end=$(date +%s.%N)
left=$(psql -qAt -d "$db" -c "SELECT count(*) FROM event_personal_data p JOIN events e USING (position)
                             WHERE e.stream_id = 'heavy' AND p.removed IS NULL")
printf '{"erase":{"userEvents":%d,"logEvents":%d,"seconds":%.3f,"personalDataLeft":%d}}\n' \
    "$events" "$total" "$(echo "$end - $start" | bc)" "$left"

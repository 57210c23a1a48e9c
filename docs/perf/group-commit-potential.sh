#!/usr/bin/env bash
# What appending several users' events in one statement (a group commit) could save,
# measured in PostgreSQL alone: pgbench runs one statement shaped like the service's append
# (stream version, event, personal-data row, room_mutes row) for BATCH users at once, with
# 16 / BATCH clients so that 16 appends are in flight either way, and prints events per
# second per batch size, round by round. The statement leaves out the append's checks (room,
# predecessor, read model) and reads the version under the lock instead of naming it:
# alike for every batch size, so the ratios compare like with like. Run from the repository
# root after `cargo build --release`.
# MODE=transaction sends BATCH one-user statements pipelined in one transaction instead
# (BEGIN, the statements, COMMIT in one round trip): one commit per batch, as the service's
# group commit does (src/service/group_commit.rs).
#   usage: docs/perf/group-commit-potential.sh
#   env:   ROUNDS (3) SECONDS_PER_RUN (10) BATCHES ("1 4 8") MODE (statement | transaction)
#          SERVICE_BIN (target/release/chatprefs)
set -euo pipefail
rounds=${ROUNDS:-3}; secs=${SECONDS_PER_RUN:-10}; batches=(${BATCHES:-1 4 8}); mode=${MODE:-statement}
bin=${SERVICE_BIN:-target/release/chatprefs}; db=chatprefs_group_commit
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
export PGOPTIONS="-c client_min_messages=warning"
out=$(mktemp -d)
cleanup() { psql -qAt -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null; rm -rf "$out"; }
trap cleanup EXIT

# One pgbench script per batch size: users spread 12,500 apart so a batch never names a
# user twice; rooms 7 apart.
script() {
    local n=$1 users=() rooms=()
    for k in $(seq 0 $((n - 1))); do
        users+=("'u-' || ((:uid + $((k * 12500))) % 100000)")
        rooms+=("'r-' || ((:rid + $((k * 7))) % 1000)")
    done
    local IFS=,
    cat <<SQL
\set uid random(0, 99999)
\set rid random(0, 999)
WITH input AS (SELECT * FROM unnest(ARRAY[${users[*]}]::text[], ARRAY[${rooms[*]}]::text[]) AS t(client, room)), head AS (INSERT INTO stream_versions AS s (app_id, stream_type, stream_id, version) SELECT 'bench', 'user_preferences', client, 1 FROM input ORDER BY client ON CONFLICT (app_id, stream_type, stream_id) DO UPDATE SET version = s.version + 1 RETURNING s.stream_id, s.version), appended AS (INSERT INTO events (event_id, app_id, stream_type, stream_id, stream_version, event_type, schema_version, data, metadata, recorded_at) SELECT gen_random_uuid(), 'bench', 'user_preferences', h.stream_id, h.version, 'RoomMuted', 1, jsonb_build_object('room', i.room), '{"actor": {"kind": "client"}}'::jsonb, clock_timestamp() FROM head h JOIN input i ON i.client = h.stream_id RETURNING position, stream_id, data->>'room' AS room, recorded_at), set_aside AS (INSERT INTO event_personal_data (position, recorded_at, address, port, user_agent) SELECT position, recorded_at, '127.0.0.1', 5000, 'bench' FROM appended), projected AS (INSERT INTO room_mutes (app_id, client_id, room_id, muted_at, position, until) SELECT 'bench', stream_id, room, recorded_at, position, NULL FROM appended ON CONFLICT (app_id, client_id, room_id) DO UPDATE SET muted_at = excluded.muted_at, position = excluded.position, until = excluded.until) SELECT count(*) FROM appended;
SQL
}
# BATCH single-user statements in one transaction, pipelined: the same append as `script`
# for one user (k-th of the batch), written with VALUES as the service's append is.
one_user() {
    local k=$1
    cat <<SQL
WITH head AS (INSERT INTO stream_versions AS s (app_id, stream_type, stream_id, version) VALUES ('bench', 'user_preferences', 'u-' || ((:uid + $((k * 12500))) % 100000), 1) ON CONFLICT (app_id, stream_type, stream_id) DO UPDATE SET version = s.version + 1 RETURNING s.stream_id, s.version), appended AS (INSERT INTO events (event_id, app_id, stream_type, stream_id, stream_version, event_type, schema_version, data, metadata, recorded_at) SELECT gen_random_uuid(), 'bench', 'user_preferences', h.stream_id, h.version, 'RoomMuted', 1, jsonb_build_object('room', 'r-' || ((:rid + $((k * 7))) % 1000)), '{"actor": {"kind": "client"}}'::jsonb, clock_timestamp() FROM head h RETURNING position, stream_id, data->>'room' AS room, recorded_at), set_aside AS (INSERT INTO event_personal_data (position, recorded_at, address, port, user_agent) SELECT position, recorded_at, '127.0.0.1', 5000, 'bench' FROM appended), projected AS (INSERT INTO room_mutes (app_id, client_id, room_id, muted_at, position, until) SELECT 'bench', stream_id, room, recorded_at, position, NULL FROM appended ON CONFLICT (app_id, client_id, room_id) DO UPDATE SET muted_at = excluded.muted_at, position = excluded.position, until = excluded.until) SELECT count(*) FROM appended;
SQL
}
transaction() {
    local n=$1
    echo '\set uid random(0, 99999)'
    echo '\set rid random(0, 999)'
    [ "$n" -eq 1 ] || printf '\\startpipeline\nBEGIN;\n'
    for k in $(seq 0 $((n - 1))); do one_user "$k"; done
    [ "$n" -eq 1 ] || printf 'COMMIT;\n\\endpipeline\n'
}
case $mode in
    statement) for n in "${batches[@]}"; do script "$n" >"$out/batch$n.pgbench"; done ;;
    transaction) for n in "${batches[@]}"; do transaction "$n" >"$out/batch$n.pgbench"; done ;;
    *) echo "MODE must be statement or transaction" >&2; exit 2 ;;
esac

psql -qAt -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$db" RUST_LOG=warn "$bin" migrate >/dev/null
bench() { pgbench -n -M prepared -j 2 -c "$2" -T "$3" -f "$out/batch$1.pgbench" "$db" 2>&1; }
bench 1 8 5 >/dev/null
psql -qAt -d "$db" -c "VACUUM ANALYZE" >/dev/null
for round in $(seq "$rounds"); do
    for n in "${batches[@]}"; do
        clients=$(( (16 + n - 1) / n ))
        result=$(bench "$n" "$clients" "$secs")
        tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$result")
        failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$result")
        echo "round=$round mode=$mode batch=$n clients=$clients statements_per_s=${tps%.*} events_per_s=$(awk -v t="$tps" -v n="$n" 'BEGIN {printf "%d", t * n}') failed=${failed:-0}"
    done
done

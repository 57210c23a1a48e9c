#!/usr/bin/env bash
# The one-trip yardstick as shipped, against the same yardstick doing the log-side work the
# service's contract adds to every append: the five further indexes on `events` that the
# audit, the change feeds and as-of read by (migrations/, docs/performance.md "At
# 10,000,000 events"), and the personal-data row kept beside the log (docs/privacy.md).
# Two databases, loaded alike; runs alternate between them, the first of each round taking
# turns (both tables grow as they are written, the faster one faster). Prints one line
# per run and the ratio per round. Run from the repository root.
#   usage: docs/perf/yardstick-equal-work.sh [YARDSTICK_DIR]     (default: ../shared/bench)
#   env:   ROUNDS (3) SECONDS_PER_RUN (15) USERS (100000) ROOMS (1000) CLIENTS (16)
set -euo pipefail
yardstick=$(cd "${1:-../shared/bench}" && pwd)
rounds=${ROUNDS:-3}; secs=${SECONDS_PER_RUN:-15}; users=${USERS:-100000}; rooms=${ROOMS:-1000}
clients=${CLIENTS:-16}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
export PGOPTIONS="-c client_min_messages=warning"
dbs=(chatprefs_equal_plain chatprefs_equal_service)
cleanup() { for db in "${dbs[@]}"; do psql -qAt -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null; done; }
trap cleanup EXIT
cleanup
for db in "${dbs[@]}"; do
    psql -qAt -d postgres -c "CREATE DATABASE $db" >/dev/null
    psql -q -d "$db" -v users="$users" -v rooms="$rooms" -f "$yardstick/yardstick-schema.sql" >/dev/null
done
# The service's indexes on the log beyond the yardstick's three (position, event id, stream
# version), and its personal-data table, filled by a trigger as the service's append fills it.
psql -q -d chatprefs_equal_service <<'SQL' >/dev/null
CREATE INDEX ON events (transaction_id, position);
CREATE INDEX ON events (app_id, stream_id, transaction_id, position);
CREATE INDEX ON events (app_id, recorded_at);
CREATE INDEX ON events (app_id, transaction_id, position);
CREATE INDEX ON events (app_id, (data->>'room'), transaction_id, position);
CREATE TABLE event_personal_data (position bigint PRIMARY KEY, recorded_at timestamptz NOT NULL,
  address text, port integer, user_agent text, removed timestamptz);
CREATE INDEX ON event_personal_data (recorded_at) WHERE removed IS NULL;
CREATE FUNCTION set_aside() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO event_personal_data (position, recorded_at, address, port, user_agent)
  VALUES (NEW.position, NEW.recorded_at, NEW.metadata->>'address', (NEW.metadata->>'port')::integer, NEW.metadata->>'userAgent');
  RETURN NULL;
END $$;
CREATE TRIGGER set_aside AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION set_aside();
SQL
bench() { pgbench -n -M prepared -j 2 -D users="$users" -D rooms="$rooms" -f "$yardstick/yardstick-mute-one-trip.pgbench" "$@"; }
for db in "${dbs[@]}"; do bench -c 4 -T 5 "$db" >/dev/null 2>&1; psql -qAt -d "$db" -c "VACUUM ANALYZE" >/dev/null; done
for round in $(seq "$rounds"); do
    declare -A tps=()
    order=("${dbs[@]}"); [ $((round % 2)) -eq 1 ] || order=("${dbs[1]}" "${dbs[0]}")
    for db in "${order[@]}"; do
        psql -qAt -d "$db" -c CHECKPOINT >/dev/null
        result=$(bench -c "$clients" -T "$secs" "$db" 2>&1)
        tps[$db]=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$result")
        failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$result")
        echo "round=$round database=$db clients=$clients tps=${tps[$db]%.*} failed=${failed:-0}"
    done
    echo "round=$round service_work_vs_plain=$(awk -v a="${tps[chatprefs_equal_service]}" -v b="${tps[chatprefs_equal_plain]}" 'BEGIN {printf "%.2f", a / b}')"
done

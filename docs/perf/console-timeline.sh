#!/usr/bin/env bash
# The console's timeline page for a user with 10,000 events: server time of the first page
# (100 rows), p50 / p99 / max from the service's own request log (`request finished`,
# `latency_us`), beside the audit API's page of the same rows. Seeds its own database with
# docs/ops/seed-log.sh (one user, EVENTS events), rebuilds the read model, adds a support
# key, signs in to the console with it, then asks N times.
#   env: DATABASE_URL (postgres://postgres@127.0.0.1:5432/chatprefs_perf_console), CHATPREFS
#        (target/release/chatprefs), EVENTS (10000), N (500), PORT (18431)
set -euo pipefail
cd "$(dirname "$0")/../.."
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/chatprefs_perf_console}
bin=${CHATPREFS:-target/release/chatprefs}; n=${N:-500}; port=${PORT:-18431}
export CHATPREFS=$bin
EVENTS=${EVENTS:-10000} USERS=1 ROOMS=50 docs/ops/seed-log.sh >/dev/null
RUST_LOG=warn "$bin" rebuild >/dev/null
key=$(RUST_LOG=warn "$bin" app key create --app bench --role support --name perf --json \
      | sed -n 's/.*"apiKey": "\(.*\)".*/\1/p')
log=$(mktemp)
RUST_LOG=info CHATPREFS_LOG_FORMAT=json "$bin" serve --bind "127.0.0.1:$port" 2>"$log" >/dev/null &
serve=$!
trap 'kill $serve 2>/dev/null; rm -f "$log"' EXIT
base="http://127.0.0.1:$port"
until curl -sf "$base/healthz" >/dev/null; do sleep 0.2; done
cookie=$(curl -s -o /dev/null -D - -H "Origin: $base" --data-urlencode "key=$key" "$base/console/sign-in" \
         | sed -n 's/^set-cookie: \(chatprefs_console=[^;]*\).*/\1/ip')
rows=$(curl -s -H "Cookie: $cookie" "$base/console/user?id=user-1" | grep -o 'data-position=' | wc -l)
echo "user-1 has $(psql -qAt -d "$DATABASE_URL" -c 'SELECT count(*) FROM events') events; the first page shows $rows rows"
for _ in $(seq 1 "$n"); do
    curl -s -o /dev/null -H "Cookie: $cookie" "$base/console/user?id=user-1"
    curl -s -o /dev/null -H "IM-API-KEY: $key" "$base/admin/audit?client=user-1&limit=100"
done
sleep 0.5
report() {
    grep '"request finished"' "$log" | grep "\"route\":\"$1\"" | grep '"status":200' \
        | sed -n 's/.*"latency_us":\([0-9]*\).*/\1/p' | sort -n | awk -v name="$2" '{ t[NR] = $1 / 1000 } END {
            printf "%-44s n=%d p50=%.2f ms p99=%.2f ms max=%.2f ms\n", name, NR,
                   t[int(NR * 0.50)], t[int(NR * 0.99)], t[NR] }'
}
report /console/user "console timeline, first page (100 rows)"
report /admin/audit "GET /admin/audit?client=&limit=100 (same rows)"

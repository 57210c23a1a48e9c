#!/usr/bin/env bash
# Measures audit and as-of latency through the HTTP API against a running `chatprefs serve`
# on a seeded log (docs/ops/seed-log.sh): N sequential requests per kind, one random user
# or room each, and prints p50 / p95 / p99 / max of curl's total time in milliseconds.
#   env: BASE (http://127.0.0.1:8080), API_KEY (required), N (200), USERS (100000), ROOMS (1000)
set -euo pipefail
base=${BASE:-http://127.0.0.1:8080}; n=${N:-200}; users=${USERS:-100000}; rooms=${ROOMS:-1000}
: "${API_KEY:?set API_KEY to the API key of the app}"
measure() {
    local name=$1; shift
    for _ in $(seq 1 "$n"); do
        curl -s -o /dev/null -w '%{time_total}\n' -H "IM-API-KEY: $API_KEY" "$("$@")"
    done | sort -n | awk -v name="$name" '{ t[NR] = $1 * 1000 } END {
        printf "%-28s n=%d p50=%.1f ms p95=%.1f ms p99=%.1f ms max=%.1f ms\n", name, NR,
               t[int(NR * 0.50)], t[int(NR * 0.95)], t[int(NR * 0.99)], t[NR] }'
}
pick_user() { local r=$((RANDOM * 32768 + RANDOM)); echo "user-$((r % users + 1))"; }
url_history() { echo "$base/admin/audit?client=$(pick_user)&limit=100"; }
url_room() { echo "$base/admin/audit?room=room-$((RANDOM % rooms + 1))&limit=100"; }
url_as_of() { echo "$base/admin/clients/$(pick_user)/mute?asOf=2026-01-01T03:00:00Z"; }
measure "audit ?client= (history)" url_history
measure "audit ?room=" url_room
measure "as-of (asOf=03:00Z)" url_as_of

#!/usr/bin/env bash
# `chatprefs rebuild` on a seeded log while `chatprefs-bench` writes through a running
# server, with or without a transaction held open in another database of the same server
# for the whole run (as a migration or batch job elsewhere would). Prints the rebuild's
# summary (it says how long writers were held) and the bench's report (every request
# must answer 200). Seed first with docs/ops/seed-log.sh. Run from the repository root.
#   usage: docs/ops/rebuild-under-load.sh [--long-transaction-elsewhere]
#   env:   DATABASE_URL (postgres://postgres@127.0.0.1:5432/chatprefs_bench), PORT (a free
#          one), BENCH_SECONDS (40), CONNECTIONS (8)
set -euo pipefail
url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/chatprefs_bench}
port=${PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
secs=${BENCH_SECONDS:-40}; connections=${CONNECTIONS:-8}
bin=target/release/chatprefs
cargo build --release --quiet --features bench
export DATABASE_URL=$url RUST_LOG=${RUST_LOG:-warn}
keys=$(mktemp); log=$(mktemp)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -f "$keys" "$log"' EXIT
"$bin" app create "rebuild-load-$$" --json >"$keys"
"$bin" serve --bind "127.0.0.1:$port" >"$log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.2; done
curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$log"; exit 1; }
if [ "${1:-}" = --long-transaction-elsewhere ]; then
    psql -qAt -d "${url%/*}/postgres" -c "BEGIN" -c "SELECT pg_current_xact_id()" \
        -c "SELECT pg_sleep($secs + 60)" >/dev/null 2>&1 &
    pids+=($!)
    echo "holding a transaction open in database postgres"
fi
"$bin-bench" --url "http://127.0.0.1:$port" --client-key "$(jq -r .clientKey "$keys")" \
    --api-key "$(jq -r .apiKey "$keys")" --users 1000 --rooms 100 \
    --connections "$connections" --duration "${secs}s" &
bench=$!
sleep 8
/usr/bin/time -f "rebuild: wall %e s, max RSS %M KB" "$bin" rebuild
wait $bench

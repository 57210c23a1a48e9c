#!/usr/bin/env bash
# Issue 15, items 1 and 2, in one sitting: the yardstick (pgbench, statements and one-trip),
# then a release build of the service on a fresh database with the authentication cache off
# (`--auth-cache-ttl-secs 0`, the "before") and on (the default, the "after"), default mix
# and mute-only at 16 and 64 connections; then the overload case, 1,024 connections, with
# the cache on, without and with `--request-deadline-ms`. Prints one line per run, `uptime`
# beside each, and the ratios. Run from the repository root.
#   usage: docs/perf/auth-cache.sh [YARDSTICK_DIR]      (default: ../shared/bench)
#   env:   SECONDS_PER_RUN (10) USERS (20000) ROOMS (1000) DEADLINE_MS (100) PORT (8181)
set -euo pipefail
yardstick=${1:-../shared/bench}
secs=${SECONDS_PER_RUN:-10}; users=${USERS:-20000}; rooms=${ROOMS:-1000}
deadline=${DEADLINE_MS:-100}; port=${PORT:-8181}
db=chatprefs_auth_cache
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
out=$(mktemp -d)
cargo build --release --quiet --features bench
bin=target/release/chatprefs
load() { uptime | sed 's/.*load average: //'; }

echo "== yardstick (${secs}s per run)"
SECONDS_PER_RUN=$secs USERS=$users ROOMS=$rooms bash "$yardstick/yardstick.sh" 16 64 | tee "$out/yardstick"
echo "load after the yardstick: $(load)"

psql -qAt -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
export DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$db"
RUST_LOG=warn "$bin" migrate >/dev/null
RUST_LOG=warn "$bin" app create bench --json >"$out/app.json"
server=
stop() { [ -z "$server" ] || { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; server=; }; }
trap 'stop; psql -qAt -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null; rm -rf "$out"' EXIT
serve() {
    RUST_LOG=warn "$bin" serve --bind "127.0.0.1:$port" "$@" >>"$out/server.log" 2>&1 &
    server=$!
    for _ in $(seq 50); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done
}
bench() {
    "$bin-bench" --url "http://127.0.0.1:$port" --client-key "$(jq -r .clientKey "$out/app.json")" \
        --api-key "$(jq -r .apiKey "$out/app.json")" --users "$users" --rooms "$rooms" --json "$@" || true
}
report() {
    jq -r --arg what "$1" --arg load "$(load)" '"service \($what) rps=\(.requests_per_second|floor) p50_ms=\(.latency.p50_ms) p99_ms=\(.latency.p99_ms) errors=\(.errors // {} | tostring) load=\($load)"' "$out/run.json" | tee -a "$out/service"
}

for cache in off on; do
    flags=(); [ "$cache" = off ] && flags=(--auth-cache-ttl-secs 0)
    serve "${flags[@]}"
    # Warm up, so cached plans are made on populated tables (as the yardstick does).
    bench --connections 16 --duration 5s >/dev/null
    psql -qAt -d "$db" -c "VACUUM ANALYZE" >/dev/null
    for c in 16 64; do
        for mix in mute=50,unmute=50 mute=100; do
            psql -qAt -d "$db" -c CHECKPOINT >/dev/null
            bench --connections "$c" --duration "${secs}s" --mix "$mix" >"$out/run.json"
            report "cache=$cache op=$mix connections=$c"
        done
    done
    stop
done

for limit in 0 "$deadline"; do
    serve --request-deadline-ms "$limit"
    bench --connections 16 --duration 3s >/dev/null
    bench --connections 1024 --duration "${secs}s" >"$out/run.json"
    report "cache=on op=mute=50,unmute=50 connections=1024 request_deadline_ms=$limit"
    stop
done

echo "== ratios (service rps / yardstick one-trip tps)"
for c in 16 64; do
    ot=$(sed -n "s/^yardstick variant=one-trip clients=$c tps=\([0-9.]*\).*/\1/p" "$out/yardstick")
    for cache in off on; do
        for mix in mute=50,unmute=50 mute=100; do
            s=$(sed -n "s/^service cache=$cache op=$mix connections=$c rps=\([0-9]*\).*/\1/p" "$out/service")
            python3 -c "print(f'cache=$cache op=$mix connections=$c vs_one_trip={$s/$ot:.2f}')"
        done
    done
done

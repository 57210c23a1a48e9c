#!/usr/bin/env bash
# The service beside the raw-PostgreSQL yardstick, in one sitting on this machine: the
# yardstick (statements and one-trip, pgbench) first, then `chatprefs-bench` against a
# release build on a fresh database, at the same client counts. Prints one line per run
# and a summary with the ratios. Run from the repository root.
#   usage: docs/perf/side-by-side.sh [YARDSTICK_DIR]      (default: ../shared/bench)
#   env:   SECONDS_PER_RUN (20) USERS (100000) ROOMS (1000) CONNECTIONS ("16 64") PORT (8181)
set -euo pipefail
yardstick=${1:-../shared/bench}
secs=${SECONDS_PER_RUN:-20}; users=${USERS:-100000}; rooms=${ROOMS:-1000}
connections=(${CONNECTIONS:-16 64}); port=${PORT:-8181}
db=chatprefs_side_by_side
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
out=$(mktemp -d)
cargo build --release --quiet --features bench
bin=target/release/chatprefs

echo "== yardstick (${secs}s per run)"
SECONDS_PER_RUN=$secs USERS=$users ROOMS=$rooms bash "$yardstick/yardstick.sh" "${connections[@]}" | tee "$out/yardstick"

echo "== service"
psql -qAt -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
export DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$db"
RUST_LOG=warn "$bin" migrate >/dev/null
RUST_LOG=warn "$bin" app create bench --json >"$out/app.json"
RUST_LOG=${RUST_LOG:-info} "$bin" serve --bind "127.0.0.1:$port" >"$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; psql -qAt -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null; rm -rf "$out"' EXIT
for _ in $(seq 50); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done
bench() {
    "$bin-bench" --url "http://127.0.0.1:$port" --client-key "$(jq -r .clientKey "$out/app.json")" \
        --api-key "$(jq -r .apiKey "$out/app.json")" --users "$users" --rooms "$rooms" --json "$@"
}
# Warm up, so cached plans are made on populated tables (as the yardstick does).
bench --connections 16 --duration 5s >/dev/null
psql -qAt -d "$db" -c "VACUUM ANALYZE" >/dev/null
# The default mix (mute 50, unmute 50) as the issue asks; most of its unmutes find the room
# not muted and append nothing. Every yardstick transaction appends, so mute-only (nearly
# every request appends) is the like-for-like line.
for c in "${connections[@]}"; do
    for mix in mute=50,unmute=50 mute=100; do
        psql -qAt -d "$db" -c CHECKPOINT >/dev/null
        bench --connections "$c" --duration "${secs}s" --mix "$mix" >"$out/run.json"
        rss=$(awk '/VmRSS/ {print $2}' "/proc/$server/status")
        jq -r --arg c "$c" --arg mix "$mix" --arg rss "$rss" '"service op=\($mix) connections=\($c) rps=\(.requests_per_second|floor) p50_ms=\(.latency.p50_ms) p99_ms=\(.latency.p99_ms) mean_ms=\(.latency.mean_ms*100|floor/100) errors=\(.errors|add // 0) rss_mib=\($rss|tonumber/1024*10|floor/10)"' "$out/run.json" | tee -a "$out/service"
    done
done
bench --connections "${connections[0]}" --duration "${secs}s" --mix me=100 >"$out/me.json"
jq -r --arg c "${connections[0]}" '"service op=GET/me connections=\($c) rps=\(.requests_per_second|floor) p50_ms=\(.latency.p50_ms) p99_ms=\(.latency.p99_ms) errors=\(.errors|add // 0)"' "$out/me.json" | tee -a "$out/service"
peak=$(awk '/VmHWM/ {print $2}' "/proc/$server/status")
echo "service peak_rss_mib=$(python3 -c "print(round($peak/1024, 1))")"

echo "== ratios (service rps / yardstick tps)"
for c in "${connections[@]}"; do
    st=$(sed -n "s/^yardstick variant=statements clients=$c tps=\([0-9.]*\).*/\1/p" "$out/yardstick")
    ot=$(sed -n "s/^yardstick variant=one-trip clients=$c tps=\([0-9.]*\).*/\1/p" "$out/yardstick")
    for mix in mute=50,unmute=50 mute=100; do
        s=$(sed -n "s/^service op=$mix connections=$c rps=\([0-9]*\).*/\1/p" "$out/service")
        python3 -c "print(f'op=$mix connections=$c vs_statements={$s/$st:.2f} vs_one_trip={$s/$ot:.2f}')"
    done
done

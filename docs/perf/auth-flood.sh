#!/usr/bin/env bash
# The failed-authentication limiter under a flood of distinct failing keys, in one sitting:
# a release build of the service on a fresh database (trusting loopback as a proxy, so each
# flood request comes from its own X-Forwarded-For address), a good client's GET /me alone
# (quiet), then the same client beside a flood of FLOOD_KEYS requests, each with a client
# key and an address never seen before, at full speed. Samples the service's RSS from /proc
# every second. Run from the repository root.
#   usage: docs/perf/auth-flood.sh
#   env:   FLOOD_KEYS (1000000) FLOOD_CONNECTIONS (16) CONNECTIONS (4) QUIET_SECONDS (20)
#          PORT (8182) BIN (target/release/chatprefs, built if missing)
#          SERVE_ARGS (extra `serve` flags, e.g. "--auth-failure-burst 0" for the limiter off)
#          SERVE_BIN (the service to measure, e.g. an older release; default BIN, which drives)
set -euo pipefail
keys=${FLOOD_KEYS:-1000000}; flood_connections=${FLOOD_CONNECTIONS:-16}
connections=${CONNECTIONS:-4}; quiet=${QUIET_SECONDS:-20}; port=${PORT:-8182}
bin=${BIN:-target/release/chatprefs}
db=chatprefs_auth_flood
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
out=$(mktemp -d)
[ -x "$bin" ] && [ -x "$bin-bench" ] || cargo build --release --quiet --features bench

psql -qAt -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
export DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$db"
RUST_LOG=warn "$bin" migrate >/dev/null
RUST_LOG=warn "$bin" app create bench --json >"$out/app.json"
RUST_LOG=error "${SERVE_BIN:-$bin}" serve --bind "127.0.0.1:$port" --trusted-proxy 127.0.0.1 ${SERVE_ARGS:-} >"$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; kill $sampler 2>/dev/null || true; psql -qAt -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null; rm -rf "$out"' EXIT
sampler=
for _ in $(seq 50); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done
rss() { awk '/VmRSS/ {print int($2/1024)}' "/proc/$server/status"; }
bench() {
    "$bin-bench" --url "http://127.0.0.1:$port" --client-key "$(jq -r .clientKey "$out/app.json")" \
        --api-key "$(jq -r .apiKey "$out/app.json")" --users 1000 --rooms 10 --mix me=100 \
        --connections "$connections" --json "$@"
}
bench --duration 5s >/dev/null
bench --duration "${quiet}s" >"$out/quiet.json"
echo "quiet rss_mib=$(rss) $(jq -c '{rps: (.requests_per_second|floor), p50_ms: .latency.p50_ms, p99_ms: .latency.p99_ms, errors: (.errors|add // 0)}' "$out/quiet.json")"

(while sleep 1; do rss; done >"$out/rss") & sampler=$!
bench --duration 1h --flood-keys "$keys" --flood-connections "$flood_connections" >"$out/flood.json"
kill $sampler; sampler=
echo "flood rss_mib_max=$(sort -n "$out/rss" | tail -1) rss_mib_after=$(rss) samples=$(wc -l <"$out/rss") $(jq -c '{rps: (.requests_per_second|floor), p50_ms: .latency.p50_ms, p99_ms: .latency.p99_ms, errors: (.errors|add // 0), flood_keys: .flood.keys, flood_seconds: (.flood.seconds|floor), flood_keys_per_s: (.flood.keys_per_second|floor), flood_answers: .flood.answers}' "$out/flood.json")"
echo "rss_mib every 10 s: $(awk 'NR % 10 == 1' "$out/rss" | paste -sd' ')"
python3 -c "import json; q=json.load(open('$out/quiet.json')); f=json.load(open('$out/flood.json')); print(f\"good client p99 flood/quiet = {f['latency']['p99_ms']/q['latency']['p99_ms']:.2f}, p50 flood/quiet = {f['latency']['p50_ms']/q['latency']['p50_ms']:.2f}\")"

#!/usr/bin/env bash
# Two builds of the service side by side on the same load, each on a fresh service and
# database per turn, alternating: req/s, p99 and the group commit's mean group
# (chatprefs_group_commit_appends_total ÷ chatprefs_group_commits_total from /metrics)
# after each run. Run from the repository root.
#   usage: docs/perf/group-sizes.sh A_BINARY B_BINARY [BENCH_ARGS…]   (default: --mix mute=100)
#   env:   TURNS (2: A, B, A, B) RUNS (2) SECONDS_PER_RUN (10) CONNECTIONS (16) USERS (1000)
#          ROOMS (200) BENCH_BIN (target/release/chatprefs-bench) PORT (8399)
set -euo pipefail
a=$1 b=$2; shift 2
args=("$@"); [ ${#args[@]} -gt 0 ] || args=(--mix mute=100)
turns=${TURNS:-2}; runs=${RUNS:-2}; secs=${SECONDS_PER_RUN:-10}; conns=${CONNECTIONS:-16}
users=${USERS:-1000}; rooms=${ROOMS:-200}; port=${PORT:-8399}
bench_bin=${BENCH_BIN:-target/release/chatprefs-bench}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
db=chatprefs_group_sizes; url="postgres://$PGUSER@$PGHOST:$PGPORT/$db"
out=$(mktemp -d); server=
cleanup() {
    [ -z "$server" ] || kill "$server" 2>/dev/null || true
    psql -qAt -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
    rm -rf "$out"
}
trap cleanup EXIT
metric() { curl -s "http://127.0.0.1:$port/metrics" | sed -n "s/^$1 \([0-9.e+]*\)$/\1/p"; }
for turn in $(seq "$turns"); do
    for side in a b; do
        bin=${!side}
        psql -qAt -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
        DATABASE_URL=$url RUST_LOG=warn "$bin" migrate >/dev/null
        DATABASE_URL=$url RUST_LOG=warn "$bin" app create bench --json >"$out/app.json"
        DATABASE_URL=$url RUST_LOG=warn "$bin" serve --bind "127.0.0.1:$port" >"$out/serve.log" 2>&1 &
        server=$!
        sleep 2
        bench() {
            "$bench_bin" --url "http://127.0.0.1:$port" --client-key "$(jq -r .clientKey "$out/app.json")" \
                --api-key "$(jq -r .apiKey "$out/app.json")" --users "$users" --rooms "$rooms" \
                --fixture "$out/fixture.json" --json --connections "$conns" "$@" "${args[@]}"
        }
        bench --duration 5s >/dev/null
        for run in $(seq "$runs"); do
            result=$(bench --duration "${secs}s")
            appends=$(metric chatprefs_group_commit_appends_total); commits=$(metric chatprefs_group_commits_total)
            echo "turn=$turn side=$side run=$run $(jq -r '"rps=\(.requests_per_second|floor) p99_ms=\(.latency.p99_ms) errors=\(.errors|length)"' <<<"$result") appends=$appends commits=$commits mean_group=$(awk -v a="$appends" -v c="$commits" 'BEGIN {printf "%.2f", (c > 0 ? a / c : 0)}')"
        done
        kill "$server"; wait "$server" 2>/dev/null || true; server=
        rm -f "$out/fixture.json"
    done
done

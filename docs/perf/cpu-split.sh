#!/usr/bin/env bash
# Where the machine's CPU goes while the one-trip yardstick runs, and while the service runs
# mute-only, alternating round by round on one machine: the share of all CPUs busy in the
# client (pgbench, or the service and chatprefs-bench), the share left to PostgreSQL (with
# the kernel's own threads: the machine's busy time less the clients'), the share idle, and
# PostgreSQL's CPU per transaction or request. Run from the repository root.
#   usage: docs/perf/cpu-split.sh [YARDSTICK_DIR]     (default: ../shared/bench)
#   env:   ROUNDS (2) SECONDS_PER_RUN (15) USERS (100000) ROOMS (1000) CONNECTIONS (16)
#          PORT (8184) SERVICE_BIN (target/release/chatprefs)
#          BENCH_BIN (target/release/chatprefs-bench) MIX (mute=100)
set -euo pipefail
yardstick=$(cd "${1:-../shared/bench}" && pwd)
rounds=${ROUNDS:-2}; secs=${SECONDS_PER_RUN:-15}; users=${USERS:-100000}; rooms=${ROOMS:-1000}
conns=${CONNECTIONS:-16}; port=${PORT:-8184}; mix=${MIX:-mute=100}
bin=${SERVICE_BIN:-target/release/chatprefs}; bench_bin=${BENCH_BIN:-target/release/chatprefs-bench}
ydb=chatprefs_cpu_yardstick; sdb=chatprefs_cpu_service
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
export PGOPTIONS="-c client_min_messages=warning"
out=$(mktemp -d); server=
cleanup() {
    [ -z "$server" ] || kill "$server" 2>/dev/null || true
    for db in $ydb $sdb; do psql -qAt -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null; done
    rm -rf "$out"
}
trap cleanup EXIT
ticks=$(getconf CLK_TCK)
# All CPUs' busy and idle time so far, in clock ticks.
machine() { head -1 /proc/stat | awk '{print $2+$3+$4+$7+$8+$9, $5+$6}'; }
# A process's own CPU time so far, in clock ticks.
own() { awk '{print $14+$15}' "/proc/$1/stat"; }
# Prints the shares of one run from the machine's and the client's ticks and the work done.
shares() {
    local label=$1 done_per_s=$2 busy=$3 idle=$4 client=$5
    awk -v l="$label" -v n="$done_per_s" -v b="$busy" -v i="$idle" -v c="$client" -v s="$secs" -v t="$ticks" \
        'BEGIN { all = b + i; pg = b - c;
                 printf "%s %.0f/s client=%.0f%% postgres=%.0f%% idle=%.0f%% postgres_us_each=%.0f\n",
                        l, n, 100 * c / all, 100 * pg / all, 100 * i / all, pg / t * 1e6 / (n * s) }'
}

YARDSTICK_DB=$ydb KEEP_YARDSTICK_DB=1 SECONDS_PER_RUN=1 USERS=$users ROOMS=$rooms \
    bash "$yardstick/yardstick.sh" "$conns" >/dev/null
psql -qAt -d postgres -c "DROP DATABASE IF EXISTS $sdb WITH (FORCE)" >/dev/null
export DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$sdb"
RUST_LOG=warn "$bin" migrate >/dev/null
RUST_LOG=warn "$bin" app create bench --json >"$out/app.json"
RUST_LOG=warn "$bin" serve --bind "127.0.0.1:$port" >"$out/server.log" 2>&1 &
server=$!
for _ in $(seq 50); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done
bench=("$bench_bin" --url "http://127.0.0.1:$port" --client-key "$(jq -r .clientKey "$out/app.json")"
    --api-key "$(jq -r .apiKey "$out/app.json")" --users "$users" --rooms "$rooms"
    --fixture "$out/fixture.json" --json)
"${bench[@]}" --connections 4 --duration 5s >/dev/null
psql -qAt -d "$sdb" -c "VACUUM ANALYZE" >/dev/null

for round in $(seq "$rounds"); do
    psql -qAt -d "$ydb" -c CHECKPOINT >/dev/null
    read -r b0 i0 < <(machine)
    /usr/bin/time -f "%e %U %S" -o "$out/time" pgbench -n -M prepared -j 2 -D users="$users" \
        -D rooms="$rooms" -f "$yardstick/yardstick-mute-one-trip.pgbench" -c "$conns" -T "$secs" \
        "$ydb" >"$out/pgbench.txt" 2>&1
    read -r b1 i1 < <(machine)
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out/pgbench.txt")
    client=$(awk -v t="$ticks" '{print ($2 + $3) * t}' "$out/time")
    shares "round=$round one-trip tps" "$tps" $((b1 - b0)) $((i1 - i0)) "$client"

    psql -qAt -d "$sdb" -c CHECKPOINT >/dev/null
    read -r b0 i0 < <(machine); s0=$(own "$server")
    /usr/bin/time -f "%e %U %S" -o "$out/time" "${bench[@]}" --connections "$conns" --duration "${secs}s" \
        --mix "$mix" >"$out/run.json"
    read -r b1 i1 < <(machine); s1=$(own "$server")
    rps=$(jq .requests_per_second "$out/run.json")
    client=$(awk -v t="$ticks" -v s=$((s1 - s0)) '{print s + ($2 + $3) * t}' "$out/time")
    shares "round=$round service($mix) rps" "$rps" $((b1 - b0)) $((i1 - i0)) "$client"
    echo "    service alone: $(( (s1 - s0) * 100 / ((b1 - b0) + (i1 - i0)) ))% of all CPUs; errors: $(jq '.errors | add // 0' "$out/run.json")"
done

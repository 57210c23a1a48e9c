#!/usr/bin/env bash
# The service against the one-trip yardstick with both under the same table growth: every
# run appends to its own database, so throughput falls run after run, and a sitting that
# runs the yardstick first and the service after compares a young database with an older
# one. Here they alternate, round by round (yardstick, then the service's default mix and
# mute-only, per client count), so each round's ratio compares databases of like age.
# Prints one line per run and a ratio line per round. Run from the repository root.
#   usage: docs/perf/alternate-yardstick.sh [YARDSTICK_DIR]     (default: ../shared/bench)
#   env:   ROUNDS (3) SECONDS_PER_RUN (15) USERS (100000) ROOMS (1000)
#          CONNECTIONS ("16 64") PORT (8183)
#          SERVICE_BIN (target/release/chatprefs) BENCH_BIN (target/release/chatprefs-bench)
#          MIXES ("mute=50,unmute=50 mute=100")
#          CPU: set to 1 to print after each run where the CPUs' time went: the client's share
#            (pgbench; or the service and chatprefs-bench), PostgreSQL's (the machine's busy
#            time less the client's, so with the kernel's own threads), the idle share, and
#            PostgreSQL's and the client's CPU per transaction or request (the service's and
#            its load generator's apart)
#          SPLIT_CORES: set to 1 to give PostgreSQL the last CPU and everything else (pgbench,
#            the service, its load generator) the others, as when the database has a host of
#            its own: on one shared box the service and its load generator otherwise take
#            CPU from PostgreSQL that pgbench does not (docs/performance.md). Needs the right
#            to set the affinity of the server's processes (root, or the postgres user);
#            every one of them is given all CPUs back at the end.
set -euo pipefail
if [ "${SPLIT_CORES:-}" = 1 ]; then
    last=$(($(nproc) - 1))
    [ "$last" -ge 1 ] || { echo "SPLIT_CORES needs two CPUs or more" >&2; exit 1; }
    # Backends are forked from the postmaster, so pinning it pins every later connection.
    pin_postgres() { for pid in $(pgrep -x -u postgres postgres); do taskset -pc "$1" "$pid" >/dev/null; done; }
    trap 'pin_postgres "0-$last"' EXIT
    pin_postgres "$last"
    SPLIT_CORES=done taskset -c "0-$((last - 1))" "$0" "$@"
    exit
fi
yardstick=$(cd "${1:-../shared/bench}" && pwd)
rounds=${ROUNDS:-3}; secs=${SECONDS_PER_RUN:-15}; users=${USERS:-100000}; rooms=${ROOMS:-1000}
connections=(${CONNECTIONS:-16 64}); port=${PORT:-8183}; mixes=(${MIXES:-mute=50,unmute=50 mute=100})
bin=${SERVICE_BIN:-target/release/chatprefs}; bench_bin=${BENCH_BIN:-target/release/chatprefs-bench}
ydb=chatprefs_alt_yardstick; sdb=chatprefs_alt_service
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
export PGOPTIONS="-c client_min_messages=warning"
out=$(mktemp -d); server=
cleanup() {
    [ -z "$server" ] || kill "$server" 2>/dev/null || true
    for db in $ydb $sdb; do psql -qAt -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null; done
    rm -rf "$out"
}
trap cleanup EXIT

# The yardstick's schema and warm-up, kept for the rounds below.
YARDSTICK_DB=$ydb KEEP_YARDSTICK_DB=1 SECONDS_PER_RUN=1 USERS=$users ROOMS=$rooms \
    bash "$yardstick/yardstick.sh" "${connections[0]}" >/dev/null
ticks=$(getconf CLK_TCK)
# All CPUs' busy and idle time so far, in clock ticks.
machine() { head -1 /proc/stat | awk '{print $2+$3+$4+$7+$8+$9, $5+$6}'; }
# What a run's client used ($out/time, from /usr/bin/time) plus $1 ticks, in ticks.
client_ticks() { awk -v t="$ticks" -v more="$1" '{print more + ($2 + $3) * t}' "$out/time"; }
# The CPU line of a run that did $1 per second, between machine readings $2 and $3, with
# its client's ticks $4, of which the service's $5 (none for pgbench). The CPU per request
# of each side is what bounds the ratio on a shared box (docs/performance.md).
cpu_line() {
    [ "${CPU:-}" = 1 ] || return 0
    read -r b0 i0 <<<"$2"; read -r b1 i1 <<<"$3"
    awk -v n="$1" -v b=$((b1 - b0)) -v i=$((i1 - i0)) -v c="$4" -v sv="${5:-}" -v s="$secs" -v t="$ticks" \
        'BEGIN { all = b + i; pg = b - c; each = t * n * s / 1e6;
                 printf "    cpu: client=%.0f%% postgres=%.0f%% idle=%.0f%% postgres_us_each=%.0f client_us_each=%.0f",
                        100 * c / all, 100 * pg / all, 100 * i / all, pg / each, c / each;
                 if (sv != "") printf " (service %.0f, load generator %.0f)", sv / each, (c - sv) / each;
                 print "" }'
}
# Prints the yardstick's TPS and its p99 in ms (from pgbench's per-transaction log, whose
# third column is the latency in µs), so the service's p99 has a like for like.
one_trip() {
    rm -f "$out"/pgbench_log.*
    local tps
    tps=$(/usr/bin/time -f "%e %U %S" -o "$out/time" pgbench -n -M prepared -j 2 -D users="$users" -D rooms="$rooms" \
        -f "$yardstick/yardstick-mute-one-trip.pgbench" -c "$1" -T "$secs" \
        -l --log-prefix="$out/pgbench_log" "$ydb" 2>&1 |
        sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    echo "$tps $(cat "$out"/pgbench_log.* | awk '{print $3}' | sort -n |
        awk '{v[NR]=$1} END {printf "%.3f", v[int(NR*0.99)]/1000}')"
}

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
# Warm up as the yardstick does: cached plans on populated tables, fresh statistics. The
# users and their tokens are set up here, once (--fixture): the yardstick loads its tokens
# once too, and setting up 100,000 users before every run would grow the tokens table by as
# many rows and leave the measured run a buffer pool dirtied by the setup.
"${bench[@]}" --connections 4 --duration 5s >/dev/null
psql -qAt -d "$sdb" -c "VACUUM ANALYZE" >/dev/null

for round in $(seq "$rounds"); do
    for c in "${connections[@]}"; do
        psql -qAt -d "$ydb" -c CHECKPOINT >/dev/null
        before=$(machine)
        read -r tps p99 < <(one_trip "$c")
        after=$(machine)
        echo "round=$round yardstick=one-trip connections=$c tps=$tps p99_ms=$p99 load=$(cut -d' ' -f1 /proc/loadavg)"
        cpu_line "$tps" "$before" "$after" "$(client_ticks 0)"
        for mix in "${mixes[@]}"; do
            psql -qAt -d "$sdb" -c CHECKPOINT >/dev/null
            before=$(machine); served=$(awk '{print $14 + $15}' "/proc/$server/stat")
            /usr/bin/time -f "%e %U %S" -o "$out/time" "${bench[@]}" --connections "$c" \
                --duration "${secs}s" --mix "$mix" >"$out/run.json"
            after=$(machine); served=$(($(awk '{print $14 + $15}' "/proc/$server/stat") - served))
            jq -r --arg r "$round" --arg c "$c" --arg mix "$mix" --arg tps "$tps" \
                '"round=\($r) service=\($mix) connections=\($c) rps=\(.requests_per_second|floor) p50_ms=\(.latency.p50_ms) p99_ms=\(.latency.p99_ms) errors=\(.errors|add // 0) vs_one_trip=\((.requests_per_second / ($tps|tonumber)) * 100 | floor / 100)"' \
                "$out/run.json"
            cpu_line "$(jq .requests_per_second "$out/run.json")" "$before" "$after" "$(client_ticks "$served")" "$served"
        done
    done
done

#!/usr/bin/env bash
# Two release builds of the service side by side in one sitting: each on a fresh database of
# its own, driven by the same load generator, runs alternating (before, after, before, …) so
# that drift in the machine's load falls on both. Prints one JSON line per run.
#   usage: docs/perf/before-after.sh BEFORE_BINARY AFTER_BINARY BENCH_BINARY [BENCH_ARGS…]
#   env:   ROUNDS (3) SECONDS_PER_RUN (20) CONNECTIONS (16) USERS (1000) ROOMS (200)
#          BEFORE_FLAGS, AFTER_FLAGS: extra `serve` flags per side (the same binary twice with
#          a setting off and on, say)
# BENCH_BINARY is `chatprefs-bench` (or a binary with a `bench` subcommand: set
# BENCH_SUBCOMMAND=bench).
set -euo pipefail
before=$1 after=$2 bench_bin=$3; shift 3
rounds=${ROUNDS:-3}; secs=${SECONDS_PER_RUN:-20}; conns=${CONNECTIONS:-16}
users=${USERS:-1000}; rooms=${ROOMS:-200}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
out=$(mktemp -d); pids=()
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true
    for side in before after; do
        psql -qAt -d postgres -c "DROP DATABASE IF EXISTS chatprefs_ab_$side WITH (FORCE)" >/dev/null
    done
    rm -rf "$out"
}
trap cleanup EXIT
port=8391
for side in before after; do
    bin=${!side}
    flags_var=${side^^}_FLAGS
    read -r -a flags <<<"${!flags_var:-}"
    url="postgres://$PGUSER@$PGHOST:$PGPORT/chatprefs_ab_$side"
    psql -qAt -d postgres -c "DROP DATABASE IF EXISTS chatprefs_ab_$side WITH (FORCE)" >/dev/null
    DATABASE_URL=$url RUST_LOG=warn "$bin" migrate >/dev/null
    DATABASE_URL=$url RUST_LOG=warn "$bin" app create bench --json >"$out/$side.json"
    DATABASE_URL=$url RUST_LOG=warn "$bin" serve --bind "127.0.0.1:$port" "${flags[@]}" >"$out/$side.log" 2>&1 &
    pids+=($!)
    echo "$port" >"$out/$side.port"; port=$((port + 1))
done
sleep 2
# Each side's users are set up once and their tokens reused (`--fixture`, which an older
# binary's `bench` subcommand lacks): a setup per run would grow each side's tokens table by
# USERS rows before every measured run.
run() {
    local side=$1; shift
    local fixture=(--fixture "$out/$side.fixture.json")
    [ -z "${BENCH_SUBCOMMAND:-}" ] || fixture=()
    "$bench_bin" ${BENCH_SUBCOMMAND:-} --url "http://127.0.0.1:$(cat "$out/$side.port")" \
        --client-key "$(jq -r .clientKey "$out/$side.json")" --api-key "$(jq -r .apiKey "$out/$side.json")" \
        --users "$users" --rooms "$rooms" "${fixture[@]}" --json "$@"
}
# Warmed up, then statistics for what the warm-up wrote: autovacuum may be off (it is on
# the machine these figures come from), and a plan cached while a table was empty can
# stay a scan of it as it grows.
for side in before after; do
    run "$side" --connections "$conns" --duration 5s "$@" >/dev/null
    psql -qAt -d "chatprefs_ab_$side" -c "VACUUM ANALYZE" >/dev/null
done
for round in $(seq "$rounds"); do
    for side in before after; do
        # Each run starts from a checkpoint, not from the other side's dirty pages.
        psql -qAt -d "chatprefs_ab_$side" -c CHECKPOINT >/dev/null
        printf '{"round":%d,"side":"%s","load":"%s","result":%s}\n' "$round" "$side" \
            "$(cut -d' ' -f1 /proc/loadavg)" "$(run "$side" --connections "$conns" --duration "${secs}s" "$@" | jq -c .)"
    done
done

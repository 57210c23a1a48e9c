#!/usr/bin/env bash
# `POST /admin/rooms/{room}/mutes/check` with 1,000 ids through the real server, on a room
# muted by MUTERS users of which 20% have expired (not yet swept) and 20% are timed but in
# force, beside 100,000 other mutes, and with one user in PAUSE_EVERY paused (do not
# disturb; a third of those pauses expired). The rows are written straight into the read
# models (the read is what is measured). Prints p50/p99 over N sequential requests and the load.
#   usage: docs/perf/check-latency.sh [CHATPREFS_BINARY]     (default target/release/chatprefs)
#   env:   MUTERS (50000) N (300) PORT (8481) PAUSE_EVERY (10; 0: nobody paused)
#          DB (chatprefs_check_latency: dropped and recreated)
set -euo pipefail
bin=${1:-target/release/chatprefs}; muters=${MUTERS:-50000}; n=${N:-300}; port=${PORT:-8481}
pause_every=${PAUSE_EVERY:-10}
db=${DB:-chatprefs_check_latency}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
export DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$db"
out=$(mktemp -d); server=
trap '[ -z "$server" ] || kill $server; wait 2>/dev/null; psql -qAt -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null; rm -rf "$out"' EXIT
psql -qAt -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
RUST_LOG=warn "$bin" migrate >/dev/null
RUST_LOG=warn "$bin" app create bench --json >"$out/app.json"
psql -q -d "$db" -v muters="$muters" -v pause_every="$pause_every" >/dev/null <<'SQL'
INSERT INTO rooms (app_id, room_id, name) SELECT 'bench', 'room-' || g, 'Room' FROM generate_series(1, 3) g;
INSERT INTO room_mutes (app_id, client_id, room_id, muted_at, position, until)
SELECT 'bench', 'user-' || g, 'room-1', now() - interval '1 day', g,
       CASE WHEN g % 5 = 0 THEN now() - interval '1 hour'
            WHEN g % 5 = 1 THEN now() + interval '1 day' END
FROM generate_series(1, :muters) g;
INSERT INTO room_mutes (app_id, client_id, room_id, muted_at, position)
SELECT 'bench', 'user-' || g, 'room-' || (2 + g % 2), now(), :muters + g FROM generate_series(1, 100000) g;
INSERT INTO notification_pauses (app_id, client_id, paused_at, position, until)
SELECT 'bench', 'user-' || g, now() - interval '1 day', 200000 + g,
       CASE WHEN g % 3 = 0 THEN now() - interval '1 hour'
            WHEN g % 3 = 1 THEN now() + interval '1 day' END
FROM generate_series(1, :muters * 5 / 4) g WHERE :pause_every > 0 AND g % :pause_every = 3;
VACUUM ANALYZE room_mutes, notification_pauses;
SQL
RUST_LOG=warn "$bin" serve --bind "127.0.0.1:$port" >"$out/server.log" 2>&1 &
server=$!
for _ in $(seq 50); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done
python3 - "$port" "$(jq -r .apiKey "$out/app.json")" "$muters" "$n" <<'PY'
import json, random, sys, time, urllib.request
port, key, muters, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
times, muted, paused = [], None, None
for i in range(n):
    ids = [f"user-{random.randint(1, int(muters * 1.25))}" for _ in range(1000)]
    req = urllib.request.Request(f"http://127.0.0.1:{port}/admin/rooms/room-1/mutes/check",
        data=json.dumps({"clients": ids}).encode(), method="POST",
        headers={"IM-API-KEY": key, "Content-Type": "application/json"})
    t = time.perf_counter()
    body = json.load(urllib.request.urlopen(req))
    times.append((time.perf_counter() - t) * 1000)
    muted = len(body["result"]["muted"])
    paused = len(body["result"].get("paused", []))
times.sort()
load = open("/proc/loadavg").read().split()[0]
print(f"mutes/check 1000 ids, {muters} muters (20% expired): n={n} p50={times[n // 2]:.2f} ms "
      f"p99={times[int(n * 0.99)]:.2f} ms last_muted={muted} last_paused={paused} load={load}")
PY

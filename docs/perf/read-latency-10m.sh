#!/usr/bin/env bash
# Read latencies through the HTTP API on a seeded log (docs/ops/seed-log.sh, by default
# 10,000,000 events of 100,000 users over 1,000 rooms, read model built by `rebuild`),
# against a running `chatprefs serve`: N sequential requests per read, one new connection
# each, timed end to end by curl (connect, HTTP, authentication, queries, JSON). Users and
# rooms are picked at random per request, so the database cannot answer from a few hot pages.
# Prints p50 / p90 / p99 / max in milliseconds, the rows an answer held (median) and the
# 1-minute load average when the read's requests were done.
#   env: BASE (http://127.0.0.1:8080), API_KEY and CLIENT_KEY (required: the seed prints
#        both), N (500), USERS (100000), ROOMS (1000),
#        AS_OF (2026-01-01T13:53:20Z: the middle of the 10M-event log; 05:33:20Z for 2M)
set -euo pipefail
base=${BASE:-http://127.0.0.1:8080}; n=${N:-500}; users=${USERS:-100000}; rooms=${ROOMS:-1000}
as_of=${AS_OF:-2026-01-01T13:53:20Z}
: "${API_KEY:?set API_KEY to the API key of the app}"
: "${CLIENT_KEY:?set CLIENT_KEY to the client key of the app}"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

random_user() { echo "user-$(((RANDOM * 32768 + RANDOM) % users + 1))"; }
random_room() { echo "room-$((RANDOM % rooms + 1))"; }

# One timed request: prints "<ms> <rows>", rows counted by the jq filter $1 on the answer.
timed() {
    local rows=$1; shift
    local t
    t=$(curl -s -o "$work/answer" -w '%{time_total}' "$@")
    echo "$t $(jq "$rows" "$work/answer")"
}

report() {
    cat > "$work/times"
    local rows
    rows=$(sort -n -k2 "$work/times" | awk '{ r[NR] = $2 } END { print r[int((NR + 1) / 2)] }')
    sort -n "$work/times" | awk -v name="$1" -v rows="$rows" -v avg="$(cut -d' ' -f1 /proc/loadavg)" '
        { t[NR] = $1 * 1000 } END {
        printf "%-46s n=%d p50=%.2f p90=%.2f p99=%.2f max=%.2f ms rows=%s load=%s\n", name, NR,
               t[int(NR * 0.50)], t[int(NR * 0.90)], t[int(NR * 0.99)], t[NR], rows, avg }'
}

admin=(-H "IM-API-KEY: $API_KEY")

# A token for one user, through the platform API as an app backend would get one.
me_user=$(random_user)
token=$(curl -s "${admin[@]}" -H 'Content-Type: application/json' \
    -d "{\"_id\": \"$me_user\", \"issueAccessToken\": true}" "$base/admin/clients" | jq -r .result.token)
[ "$token" != null ] || { echo "could not issue a token for $me_user" >&2; exit 1; }

# mutes/check body: 1,000 ids of which about half muted the room (every other one of its
# first 1,000 muters by id) and half are random users, most of whom did not.
check_room=$(random_room)
curl -s "${admin[@]}" "$base/admin/rooms/$check_room/mutes?limit=1000" |
    jq -r '.result.clients[]._id' | awk 'NR % 2' > "$work/ids"
while [ "$(wc -l < "$work/ids")" -lt 1000 ]; do random_user >> "$work/ids"; done
jq -R . "$work/ids" | jq -s '{clients: .}' > "$work/check.json"

echo "# $(date -u +%FT%TZ) base=$base n=$n users=$users rooms=$rooms asOf=$as_of load: $(cut -d' ' -f1-3 /proc/loadavg)"
for _ in $(seq "$n"); do
    timed '.result.entries | length' "${admin[@]}" "$base/admin/audit?client=$(random_user)&limit=100"
done | report "GET /admin/audit?client= (limit 100)"

# A user has about 100 events at 10M: pages of 50 make a second page to read.
for _ in $(seq "$n"); do
    user=$(random_user)
    next=$(curl -s "${admin[@]}" "$base/admin/audit?client=$user&limit=50" | jq .result.next)
    timed '.result.entries | length' "${admin[@]}" "$base/admin/audit?client=$user&limit=50&after=$next"
done | report "  its next page (limit 50, after=next)"

for _ in $(seq "$n"); do
    timed '.result.entries | length' "${admin[@]}" "$base/admin/audit?room=$(random_room)&limit=100"
done | report "GET /admin/audit?room= (limit 100)"

for _ in $(seq "$n"); do
    room=$(random_room)
    next=$(curl -s "${admin[@]}" "$base/admin/audit?room=$room&limit=100" | jq .result.next)
    timed '.result.entries | length' "${admin[@]}" "$base/admin/audit?room=$room&limit=100&after=$next"
done | report "  its next page (after=next)"

for _ in $(seq "$n"); do
    timed '.result.mute | length' "${admin[@]}" "$base/admin/clients/$(random_user)/mute?asOf=$as_of"
done | report "GET /admin/clients/{uid}/mute?asOf= (mid-log)"

for _ in $(seq "$n"); do
    timed '.result.muted | length' "${admin[@]}" -H 'Content-Type: application/json' \
        --data-binary @"$work/check.json" "$base/admin/rooms/$check_room/mutes/check"
done | report "POST /admin/rooms/{room}/mutes/check (1,000)"

for _ in $(seq "$n"); do
    timed '.result.clients | length' "${admin[@]}" "$base/admin/rooms/$(random_room)/mutes"
done | report "GET /admin/rooms/{room}/mutes (first page)"

for _ in $(seq "$n"); do
    timed '.result.mute | length' -H "IM-CLIENT-KEY: $CLIENT_KEY" -H "IM-Authorization: $token" "$base/me"
done | report "GET /me"

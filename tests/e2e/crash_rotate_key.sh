#!/usr/bin/env bash
# Crash anywhere: kvreconcile apply of the rotate-key scenario is killed with SIGKILL at random
# (seeded, reproducible) instants, over and over, then run to convergence. Afterwards: no data
# key lost, the key has exactly the versions the scenario makes (no duplicates), every client
# secret of the app has its stored copy (no orphans), and a plan is empty.
# usage: crash_rotate_key.sh KVRECONCILE AZSIM [KILLS_PER_PHASE] [SEED]
set -euo pipefail
kvr=$(realpath "$1")
azsim=$(realpath "$2")
kills=${3:-${KVR_CRASH_POINTS:-25}}
RANDOM=${4:-${KVR_CRASH_SEED:-4242}}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
pid=
passed=0 failed=0 survived=0
cleanup() {
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
check() { if [ "$2" = 0 ]; then echo "ok   $1"; passed=$((passed + 1)); else echo "FAIL $1"; failed=$((failed + 1)); fi; }
"$azsim" --data "$work/sim" --port 0 --subscription 3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43 \
    --rbac-delay 2 --data-keys 20 --rewrap-rate 20 >"$work/azsim.out" 2>"$work/azsim.err" &
pid=$!
for _ in $(seq 1 100); do grep -q '^azsim ready' "$work/azsim.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^azsim ready' "$work/azsim.out" || { cat "$work/azsim.err"; echo "0 passed, 1 failed"; exit 1; }
set -a; . "$work/sim/azsim.env"; set +a
json() { /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
lost() { curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/consumer" | json 'd["unrecoverable"]'; }
token() {
    curl -sS --cacert "$AZSIM_CA" "https://login.localhost:$AZSIM_PORT/$AZURE_TENANT_ID/oauth2/v2.0/token" \
        --data-urlencode grant_type=client_credentials --data-urlencode "client_id=$AZURE_CLIENT_ID" \
        --data-urlencode "client_secret=$AZURE_CLIENT_SECRET" --data-urlencode "scope=$1/.default" | json 'd["access_token"]'
}
crash_phase() { # desired-dir
    local i delay_ms p
    for i in $(seq 1 "$kills"); do
        delay_ms=$((RANDOM % 1500))
        "$kvr" apply -q -f "$1" --wait 1m >/dev/null 2>&1 &
        p=$!
        sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
        survived=$((survived + 1))
        [[ $(lost) == 0 ]] || { echo "data key lost after kill $i"; return 1; }
    done
}
B="$root/examples/rotate-key/before"
A="$root/examples/rotate-key/after"
crash_phase "$B"
set +e; "$kvr" apply -q -f "$B" --wait 2m; rc=$?; set -e
check "before/: converges after $kills kills" "$([[ $rc == 0 ]]; echo $?)"
crash_phase "$A"
set +e; "$kvr" apply -q -f "$A" --wait 1m; rc=$?; set -e
check "after/: runs to its retention gate after $kills more kills (exit 3)" "$([[ $rc == 3 ]]; echo $?)"
check "no data key lost ($survived kill points)" "$([[ $(lost) == 0 ]]; echo $?)"

kv=$(token "https://vault.localhost:$AZSIM_PORT")
graph=$(token "https://graph.localhost:$AZSIM_PORT")
versions=$(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $kv" \
    "https://kv-contoso-bkp-weu.vault.localhost:$AZSIM_PORT/keys/backup-dek/versions?api-version=7.5" | json 'len(d["value"])')
check "the key has exactly 2 versions (no duplicates): $versions" "$([[ $versions == 2 ]]; echo $?)"
apps=$(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $graph" -G \
    "https://graph.localhost:$AZSIM_PORT/v1.0/applications" --data-urlencode "\$filter=displayName eq 'Contoso backup encryption (aos-backup)'")
check "exactly one app (no duplicate registrations)" "$([[ $(echo "$apps" | json 'len(d["value"])') == 1 ]]; echo $?)"
keyids=$(echo "$apps" | json '" ".join(p["keyId"] for p in d["value"][0]["passwordCredentials"])')
stored=$(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $kv" \
    "https://kv-contoso-bkp-weu.vault.localhost:$AZSIM_PORT/secrets?api-version=7.5" |
    json '" ".join(s.get("tags",{}).get("kvr-credential-key-id","") for s in d["value"])')
orphans=0
for k in $keyids; do [[ " $stored " == *" $k "* ]] || orphans=$((orphans + 1)); done
check "every client secret has its stored copy (orphans: $orphans)" "$([[ $orphans == 0 ]]; echo $?)"
profiles=$(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $(token "https://profiles.localhost:$AZSIM_PORT")" \
    "https://profiles.localhost:$AZSIM_PORT/encryptionProfiles?api-version=2026-01-01" | json 'len(d["value"])')
check "exactly 2 profiles" "$([[ $profiles == 2 ]]; echo $?)"
echo "kill points survived: $survived"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

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
. "$(dirname "$0")/lib.sh"
e2e_init
survived=0
azsim_start "$azsim" --subscription 3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43 --rbac-delay 2 --data-keys 20 --rewrap-rate 20
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
        [[ $(azsim_lost) == 0 ]] || { echo "data key lost after kill $i"; return 1; }
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
check "no data key lost ($survived kill points)" "$([[ $(azsim_lost) == 0 ]]; echo $?)"

kv=$(azsim_token "https://vault.localhost:$AZSIM_PORT")
graph=$(azsim_token "https://graph.localhost:$AZSIM_PORT")
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
profiles=$(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $(azsim_token "https://profiles.localhost:$AZSIM_PORT")" \
    "https://profiles.localhost:$AZSIM_PORT/encryptionProfiles?api-version=2026-01-01" | json 'len(d["value"])')
check "exactly 2 profiles" "$([[ $profiles == 2 ]]; echo $?)"
echo "kill points survived: $survived"
e2e_finish

#!/usr/bin/env bash
# A relocation copy with `secrets: all`: every enabled version of every secret of the source
# vault arrives in the target, oldest first (so the latest stays the latest); a disabled version
# is not copied; the plan is empty afterwards; no value appears in any output.
# usage: apply_copy_versions.sh KVRECONCILE AZSIM
set -euo pipefail
kvr=$(realpath "$1")
azsim=$(realpath "$2")
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"
e2e_init
azsim_start "$azsim" --subscription 3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43
D="$root/tests/fixtures/e2e/copy-all-versions"
kv=$(azsim_token "https://vault.localhost:$AZSIM_PORT")
azsim_vault rg-copy kv-copy-src
SRC="https://kv-copy-src.vault.localhost:$AZSIM_PORT"
DST="https://kv-copy-dst.vault.localhost:$AZSIM_PORT"
put() { curl -sS --cacert "$AZSIM_CA" -X PUT "$SRC/secrets/$1?api-version=7.5" -H "Authorization: Bearer $kv" \
    -H 'Content-Type: application/json' -d "{\"value\":\"$2\",\"contentType\":\"text/plain\"}" | json 'd["id"].rsplit("/",1)[1]'; }
put db Copy-Canary-v1 >/dev/null
old=$(put db Copy-Canary-v2-disabled)
put db Copy-Canary-v3 >/dev/null
put api Copy-Canary-api >/dev/null
curl -sS --cacert "$AZSIM_CA" -X PATCH "$SRC/secrets/db/$old?api-version=7.5" -H "Authorization: Bearer $kv" \
    -H 'Content-Type: application/json' -d '{"attributes":{"enabled":false}}' >/dev/null
extra=12 # more copies than an apply may read the estate: the copies run as one wave
for i in $(seq -w 1 $extra); do put "bulk-$i" "Copy-Canary-bulk-$i" >/dev/null; done
lists0=$(azsim_requests kv.secrets.list)
set +e
"$kvr" apply -f "$D" --wait 1m >"$work/out" 2>"$work/err"
rc=$?
set -e
check "apply copies and converges (exit 0)" "$([[ $rc == 0 ]]; echo $?)"
[[ $rc == 0 ]] || cat "$work/err"
values=$(for id in $(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $kv" "$DST/secrets/db/versions?api-version=7.5" |
        json '" ".join(i["id"] for i in sorted(d["value"], key=lambda i: i["attributes"]["created"]))'); do
    curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $kv" "$id?api-version=7.5" | json 'd["value"]'
done | tr '\n' ' ')
check "every enabled version copied, oldest first, the disabled one not: $values" \
    "$([[ $values == "Copy-Canary-v1 Copy-Canary-v3 " ]]; echo $?)"
latest=$(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $kv" "$DST/secrets/db/?api-version=7.5" | json 'd["value"]')
check "the latest stays the latest" "$([[ $latest == Copy-Canary-v3 ]]; echo $?)"
api=$(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $kv" "$DST/secrets/api/?api-version=7.5" | json 'd["value"]')
check "the other secret copied too" "$([[ $api == Copy-Canary-api ]]; echo $?)"
copied=$(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $kv" "$DST/secrets?api-version=7.5&maxresults=25" |
    json 'len([i for i in d["value"] if "/secrets/bulk-" in i["id"]])')
check "the $extra bulk secrets copied: $copied" "$([[ $copied == "$extra" ]]; echo $?)"
reads=$(( $(azsim_requests kv.secrets.list) - lists0 ))
check "$((extra + 2)) copies in a few reads of the estate ($reads secret lists, not one read per copy)" \
    "$([[ $reads -le 10 ]]; echo $?)"
set +e; "$kvr" plan -f "$D" --detailed-exitcode >"$work/plan" 2>&1; rc=$?; set -e
check "plan is empty afterwards" "$([[ $rc == 0 ]]; echo $?)"
check "no value in any output" "$(! grep -q 'Copy-Canary' "$work/out" "$work/err" "$work/plan"; echo $?)"
e2e_finish

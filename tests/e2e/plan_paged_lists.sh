#!/usr/bin/env bash
# A vault's key and secret listings arrive page by page and the reader handles each page as it
# comes (it never holds a whole listing). Here they span several pages (azsim pages by 25):
#   1. the converged rotate-key estate with 40 undeclared secrets and 30 undeclared EC keys added
#      plans nothing, and no deleted-object list is read (every declaration was found, on
#      whichever page it was);
#   2. with one declared secret soft-deleted, the plan recovers it, after one deleted-secrets
#      list; the declared key is still found.
# usage: plan_paged_lists.sh KVRECONCILE AZSIM
set -euo pipefail
. "$(dirname "$0")/lib.sh"
scenario_init "$1" "$2" rotate-key
azsim_start "$azsim" --subscription "$sub"

set +e
"$kvr" apply -f "$B" --wait 2m >"$work/out.0" 2>"$work/err.0"
rc=$?
set -e
check "before/ applied (exit $rc)" "$([[ $rc == 0 ]]; echo $?)"
[[ $rc == 0 ]] || tail -20 "$work/err.0"

kv=$(azsim_token "https://vault.localhost:$AZSIM_PORT")
V="https://kv-contoso-bkp-weu.vault.localhost:$AZSIM_PORT"
rest() { # METHOD PATH [BODY]
    curl -sS --cacert "$AZSIM_CA" -X "$1" "$V$2?api-version=7.5" -H "Authorization: Bearer $kv" \
        -H 'Content-Type: application/json' ${3:+-d "$3"} >/dev/null
}
for i in $(seq -w 1 40); do rest PUT "/secrets/zz-extra-$i" '{"value":"paged-extra"}'; done
# Key Vault allows 20 software key creations per 10 s per vault (azsim too): wait out the 429s
for i in $(seq -w 1 30); do
    for _ in $(seq 1 40); do
        code=$(curl -sS --cacert "$AZSIM_CA" -o /dev/null -w '%{http_code}' -X POST \
            "$V/keys/zz-extra-$i/create?api-version=7.5" -H "Authorization: Bearer $kv" \
            -H 'Content-Type: application/json' -d '{"kty":"EC","crv":"P-256"}')
        [[ $code == 429 ]] || break
        sleep 0.5
    done
done

nkeys=$(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $kv" "$V/keys?api-version=7.5&maxresults=25" |
    json 'len(d["value"]) + (1 if d.get("nextLink") else 0) * 1000')
check "the keys no longer fit one page of 25 ($nkeys)" "$([[ $nkeys -ge 1000 ]]; echo $?)"

# 1. converged across pages
s0=$(azsim_requests kv.secrets.list) k0=$(azsim_requests kv.keys.list)
ds0=$(azsim_requests kv.deletedsecrets.list) dk0=$(azsim_requests kv.deletedkeys.list)
set +e
"$kvr" plan -f "$B" --detailed-exitcode >"$work/out.1" 2>"$work/err.1"
rc=$?
set -e
check "plan over paged listings finds nothing to do (exit $rc)" "$([[ $rc == 0 ]]; echo $?)"
[[ $rc == 0 ]] || cat "$work/out.1" "$work/err.1"
check "the secret listing took several pages ($(($(azsim_requests kv.secrets.list) - s0)))" \
    "$([[ $(($(azsim_requests kv.secrets.list) - s0)) -ge 2 ]]; echo $?)"
check "the key listing took several pages ($(($(azsim_requests kv.keys.list) - k0)))" \
    "$([[ $(($(azsim_requests kv.keys.list) - k0)) -ge 2 ]]; echo $?)"
check "no deleted-object list was needed" \
    "$([[ $(azsim_requests kv.deletedsecrets.list) == "$ds0" && $(azsim_requests kv.deletedkeys.list) == "$dk0" ]]; echo $?)"

# 2. a declared secret soft-deleted: found missing only once every page has been seen
rest DELETE /secrets/backup-export-passphrase
set +e
"$kvr" plan -f "$B" --detailed-exitcode >"$work/out.2" 2>"$work/err.2"
rc=$?
set -e
check "plan with a soft-deleted declared secret has changes (exit $rc)" "$([[ $rc == 2 ]]; echo $?)"
check "it recovers the secret" \
    "$(grep -q "secret 'backup-export-passphrase': recover the soft-deleted secret" "$work/out.2"; echo $?)"
check "and nothing else: the declared key was found on its page" \
    "$(grep -c '^ *[0-9]* [+~-] ' "$work/out.2" | grep -qx 1; echo $?)"
[[ $(grep -c '^ *[0-9]* [+~-] ' "$work/out.2") == 1 ]] || cat "$work/out.2"
check "one deleted-secrets list, no deleted-keys list" \
    "$([[ $(azsim_requests kv.deletedsecrets.list) == $((ds0 + 1)) && $(azsim_requests kv.deletedkeys.list) == "$dk0" ]]; echo $?)"
azsim_stop
e2e_sanitizer_scan
e2e_finish

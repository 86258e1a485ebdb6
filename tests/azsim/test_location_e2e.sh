#!/usr/bin/env bash
# Locations as Azure spells them: azsim's list of deleted vaults carries the display name ("West
# Europe") as real Azure's can, where the desired state says "westeurope". A vault deleted by hand
# must be planned and applied as a recover (createMode: recover), not held back as a vault in
# another region.
# usage: test_location_e2e.sh KVRECONCILE AZSIM
set -euo pipefail
. "$(dirname "$0")/../e2e/lib.sh"
scenario_init "$1" "$2" new-vault
azsim_start "$azsim" ${sub:+--subscription "$sub"} --rbac-delay 1 --data-keys 20
kvr() { # kvr NAME ARGS...: stdout to $work/out.NAME, stderr to $work/err.NAME; sets rc
    local name=$1
    shift
    set +e
    "$kvr" "$@" >"$work/out.$name" 2>"$work/err.$name"
    rc=$?
    set -e
}

kvr 1 apply -f "$B" --wait 2m
check "apply before/ (exit $rc)" "$([[ $rc == 0 ]]; echo $?)"
[[ $rc == 0 ]] || tail -20 "$work/err.1"
mt=$(azsim_token "$KVR_ARM_ENDPOINT")
subs="$KVR_ARM_ENDPOINT/subscriptions/$AZURE_SUBSCRIPTION_ID"
vault=$(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $mt" \
    "$subs/providers/Microsoft.KeyVault/vaults?api-version=2026-02-01" | json 'd["value"][0]["id"]')
curl -sS --cacert "$AZSIM_CA" -X DELETE -H "Authorization: Bearer $mt" \
    "$KVR_ARM_ENDPOINT$vault?api-version=2026-02-01" -o /dev/null
loc=$(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $mt" \
    "$subs/providers/Microsoft.KeyVault/deletedVaults?api-version=2026-02-01" |
    json 'd["value"][0]["properties"]["location"]')
check "the deleted-vault list names the region 'West Europe' ($loc)" "$([[ $loc == 'West Europe' ]]; echo $?)"
kvr 2 plan -f "$B"
check "plan: the soft-deleted vault is recovered (createMode: recover)" \
    "$(grep -q 'recover the soft-deleted vault' "$work/out.2"; echo $?)"
check "plan: not held back as a vault of another region" \
    "$(! grep -q 'held by a soft-deleted vault in' "$work/out.2" "$work/err.2"; echo $?)"
kvr 3 apply -f "$B" --wait 2m
check "apply recovers it (exit $rc)" "$([[ $rc == 0 ]]; echo $?)"
[[ $rc == 0 ]] || tail -20 "$work/err.3"
kvr 4 plan -f "$B" --detailed-exitcode
check "converged: plan is empty (exit $rc)" "$([[ $rc == 0 ]]; echo $?)"
e2e_finish

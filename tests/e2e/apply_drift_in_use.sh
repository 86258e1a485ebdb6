#!/usr/bin/env bash
# Drift that breaks decryption (issue #15): the key version the Used profile wraps its data keys
# with is disabled out of band. plan shows the fix first, with no gate (exit 2 with
# --detailed-exitcode); apply enables the version again; the plan is then empty, and no data
# key was lost.
# (azsim counts the data keys of a disabled version as unavailable, not lost: enabling it gives
# them back, as in Key Vault.)
# usage: apply_drift_in_use.sh KVRECONCILE AZSIM
set -euo pipefail
. "$(dirname "$0")/lib.sh"
rotate_key_before_init "$1" "$2"
kv=$(azsim_token "https://vault.localhost:$AZSIM_PORT")
V="https://kv-contoso-bkp-weu.vault.localhost:$AZSIM_PORT"
kid=$(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $kv" "$V/keys/backup-dek/?api-version=7.5" | json 'd["key"]["kid"]')
version=${kid##*/}
enabled() { curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $kv" "$V/keys/backup-dek/$version?api-version=7.5" | json 'str(d["attributes"]["enabled"]).lower()'; }
# out of band, as someone in the portal would
curl -sS --fail --cacert "$AZSIM_CA" -X PATCH -H "Authorization: Bearer $kv" -H 'Content-Type: application/json' \
    "$V/keys/backup-dek/$version?api-version=7.5" -d '{"attributes":{"enabled":false}}' >/dev/null
check "the used version is disabled out of band ($(enabled))" "$([[ $(enabled) == false ]]; echo $?)"
consumer=$(curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/consumer")
check "  the service cannot use its data keys now, but has lost none ($consumer)" \
    "$([[ $(echo "$consumer" | json 'd["unavailable"]') -gt 0 && $(echo "$consumer" | json 'd["unrecoverable"]') == 0 ]]; echo $?)"
set +e; NO_COLOR=1 "$kvr" plan -f "$B" --detailed-exitcode >"$work/plan.txt" 2>&1; rc=$?; set -e
check "plan sees it (exit 2, got $rc)" "$([[ $rc == 2 ]]; echo $?)"
check "  step 1 enables it again, with no gate" \
    "$(grep -q "^  1 ~ key 'backup-dek' version ${version:0:8}: enable again: profile 'contoso-backup-2026-05' (Used)" "$work/plan.txt" &&
       ! grep -q 'waiting for' "$work/plan.txt"; echo $?)"
[[ $rc == 2 ]] || cat "$work/plan.txt"
kvr_apply "apply fixes it" 0 -f "$B"
check "the version is enabled again ($(enabled))" "$([[ $(enabled) == true ]]; echo $?)"
kvr_plan_empty "$B"
e2e_finish

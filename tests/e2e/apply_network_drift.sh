#!/usr/bin/env bash
# Network drift (issue #15): every network setting of a vault is compared after it exists. An
# ipRule 0.0.0.0/0 and bypass None set in the portal are shown one by one, old -> new, and
# corrected by apply, after which the plan is empty; a rule added in the YAML is planned too.
# usage: apply_network_drift.sh KVRECONCILE AZSIM
set -euo pipefail
kvr=$(realpath "$1")
azsim=$(realpath "$2")
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"
e2e_init
cp -r "$root/examples/rotate-key/before" "$work/B"
B="$work/B"
azsim_start "$azsim" --subscription 3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43 --rbac-delay 0 --data-keys 20 --rewrap-rate 10
kvr_apply "apply before/" 0 -f "$B" --wait 2m
kvr_plan_empty "$B"
arm=$(azsim_token "$KVR_ARM_ENDPOINT")
VAULT="$KVR_ARM_ENDPOINT/subscriptions/$AZURE_SUBSCRIPTION_ID/resourceGroups/rg-contoso-backup-weu/providers/Microsoft.KeyVault/vaults/kv-contoso-bkp-weu?api-version=2024-11-01"
acls() { curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $arm" "$VAULT" | json 'd["properties"]["networkAcls"]'; }
# out of band, as someone in the portal would: open the vault to the internet
curl -sS --fail --cacert "$AZSIM_CA" -X PATCH -H "Authorization: Bearer $arm" -H 'Content-Type: application/json' "$VAULT" \
    -d '{"properties":{"networkAcls":{"defaultAction":"Deny","bypass":"None","ipRules":[{"value":"203.0.113.0/24"},{"value":"198.51.100.17"},{"value":"0.0.0.0/0"}],"virtualNetworkRules":[]}}}' >/dev/null
check "out of band: 0.0.0.0/0 and bypass None ($(acls))" "$(acls | grep -q '0.0.0.0/0'; echo $?)"
set +e; NO_COLOR=1 "$kvr" plan -f "$B" --detailed-exitcode >"$work/plan.txt" 2>&1; rc=$?; set -e
check "plan: exit 2 ($rc)" "$([[ $rc == 2 ]]; echo $?)"
check "  shows the rule that goes" "$(grep -q 'network.ipRules: 0.0.0.0/0 -> (none)' "$work/plan.txt"; echo $?)"
check "  and bypass, old -> new" "$(grep -q 'network.bypass: None -> AzureServices' "$work/plan.txt"; echo $?)"
[[ $rc == 2 ]] || cat "$work/plan.txt"
kvr_apply "apply corrects it" 0 -f "$B"
check "the rule is gone ($(acls))" "$(! acls | grep -q '0.0.0.0/0'; echo $?)"
kvr_plan_empty "$B"
# a rule added in the YAML is planned (it used to say No changes)
sed -i 's|ipRules: \[203.0.113.0/24, 198.51.100.17\]|ipRules: [203.0.113.0/24, 198.51.100.17, 192.0.2.10]|' "$B/vaults.yaml"
set +e; NO_COLOR=1 "$kvr" plan -f "$B" --detailed-exitcode >"$work/plan2.txt" 2>&1; rc=$?; set -e
check "a rule added in the YAML is planned (exit $rc)" \
    "$([[ $rc == 2 ]] && grep -q 'network.ipRules: 192.0.2.10' "$work/plan2.txt"; echo $?)"
kvr_apply "apply adds it" 0 -f "$B"
check "the vault has it ($(acls))" "$(acls | grep -q '192.0.2.10'; echo $?)"
kvr_plan_empty "$B"
e2e_finish

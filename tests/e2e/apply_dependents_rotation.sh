#!/usr/bin/env bash
# Dependents outside the estate gate a key rotation's retirement (issue #21). rotate-key's
# before/ is applied; a disk encryption set in a resource group the YAML never names gets a
# versionless key URL on the key (auto-rotation), a storage account a CMK pinned to its current
# version. The plan of after/ shows both on the current version's disable step; after the new
# version is made and every retention period has passed, the versionless one has moved on with
# the key (it uses the current version, which is now the new one) but the pinned storage account
# still holds the old version: it stays enabled until the storage account is pointed at the new
# version, or acknowledged in the YAML. The consuming service must never lose a data key.
# usage: apply_dependents_rotation.sh KVRECONCILE AZSIM
set -euo pipefail
. "$(dirname "$0")/lib.sh"
rotate_key_before_init "$1" "$2"
A="$root/examples/rotate-key/after"
sub=3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43

arm=$(azsim_token "$KVR_ARM_ENDPOINT")
armcall() { # METHOD PATH [BODY] -> response on stdout, status in $code
    local out
    out=$(curl -sS --cacert "$AZSIM_CA" -X "$1" -H "Authorization: Bearer $arm" \
        -H 'Content-Type: application/json' -w '\n%{http_code}' "$KVR_ARM_ENDPOINT$2" ${3:+-d "$3"})
    code=${out##*$'\n'}
    printf '%s\n' "${out%$'\n'*}"
}
kvtok=$(azsim_token "https://vault.localhost:$AZSIM_PORT")
kv="https://kv-contoso-bkp-weu.vault.localhost:$AZSIM_PORT"
versions() { # the key's versions, oldest first, as "id:enabled"
    curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $kvtok" \
        "$kv/keys/backup-dek/versions?api-version=7.5" |
        json '" ".join("%s:%s" % (i["kid"].rsplit("/",1)[1], i["attributes"]["enabled"]) for i in sorted(d["value"], key=lambda i: i["attributes"]["created"]))'
}
v1=$(versions | cut -d: -f1)
check "before/: one key version ($v1)" "$([[ ${#v1} == 32 ]]; echo $?)"

S="/subscriptions/$sub"
ST="$S/resourceGroups/rg-contoso-data/providers/Microsoft.Storage/storageAccounts/stcontosodata"
DES="$S/resourceGroups/rg-contoso-vms/providers/Microsoft.Compute/diskEncryptionSets/des-contoso"
for rg in rg-contoso-data rg-contoso-vms; do
    armcall PUT "$S/resourceGroups/$rg?api-version=2021-04-01" '{"location":"westeurope"}' >/dev/null
done
storage_put() { # KEY_VERSION
    armcall PUT "$ST?api-version=2023-05-01" "{\"location\":\"westeurope\",\"kind\":\"StorageV2\",\"sku\":{\"name\":\"Standard_LRS\"},\"identity\":{\"type\":\"SystemAssigned\"},\"properties\":{\"encryption\":{\"keySource\":\"Microsoft.Keyvault\",\"keyvaultproperties\":{\"keyvaulturi\":\"$kv\",\"keyname\":\"backup-dek\",\"keyversion\":\"$1\"}}}}"
}
storage_put "$v1" >"$work/st.json"
check "storage account pinned to $v1 ($code)" "$([[ $code == 200 ]]; echo $?)"
check "storage: currentVersionedKeyIdentifier names it" \
    "$([[ $(json 'd["properties"]["encryption"]["keyvaultproperties"]["currentVersionedKeyIdentifier"]' <"$work/st.json") == "$kv/keys/backup-dek/$v1" ]]; echo $?)"
armcall PUT "$DES?api-version=2023-04-02" "{\"location\":\"westeurope\",\"identity\":{\"type\":\"SystemAssigned\"},\"properties\":{\"activeKey\":{\"sourceVault\":{\"id\":\"$S/resourceGroups/rg-contoso-backup-weu/providers/Microsoft.KeyVault/vaults/kv-contoso-bkp-weu\"},\"keyUrl\":\"$kv/keys/backup-dek\"},\"rotationToLatestKeyVersionEnabled\":true}}" >/dev/null
check "disk encryption set with a versionless key URL ($code)" "$([[ $code == 200 ]]; echo $?)"
# ARM's own list and api-version answers for these types
armcall GET "$S/providers/Microsoft.Storage/storageAccounts?api-version=2023-05-01" >"$work/list.json"
check "storage accounts listed by subscription" "$(json 'len(d["value"])' <"$work/list.json" | grep -qx 1; echo $?)"
armcall GET "$S/resourceGroups/rg-contoso-vms/providers/Microsoft.Compute/diskEncryptionSets?api-version=2023-04-02" >"$work/list.json"
check "disk encryption sets listed by resource group" "$(json 'd["value"][0]["properties"]["activeKey"]["keyUrl"]' <"$work/list.json" | grep -q '/keys/backup-dek$'; echo $?)"
armcall GET "$DES?api-version=2017-01-01" >"$work/badapi.json"
check "an api-version the provider never had: 400 ($code)" \
    "$([[ $code == 400 ]] && grep -q NoRegisteredProviderFound "$work/badapi.json"; echo $?)"

# Resource Graph pages by $skipToken: kvreconcile's query, one row a page
q=$(sed -n '/^const char kvr__dependents_query/,/;$/p' "$root/reconciler/providers/azure/dependents.c" |
    sed -n 's/^ *"\(.*\)"[;]*$/\1/p' | tr -d '\n')
graph() { # SKIPTOKEN
    /usr/bin/python3 -c 'import json,sys; o={"$top":1,"resultFormat":"objectArray"}
if sys.argv[3]: o["$skipToken"]=sys.argv[3]
print(json.dumps({"subscriptions":[sys.argv[1]],"query":sys.argv[2],"options":o}))' "$sub" "$q" "$1" >"$work/q.json"
    armcall POST "/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01" "@$work/q.json"
}
graph "" >"$work/p1.json"
tok=$(json 'd.get("$skipToken","")' <"$work/p1.json")
graph "$tok" >"$work/p2.json"
check "Resource Graph: page 1 of 2 with a \$skipToken ($code)" \
    "$([[ $(json '(d["totalRecords"], d["count"], d["data"][0]["type"])' <"$work/p1.json") == "(2, 1, 'microsoft.storage/storageaccounts')" && -n $tok ]]; echo $?)"
check "Resource Graph: page 2, the last" \
    "$([[ $(json '(d["count"], d["data"][0]["name"], "$skipToken" in d)' <"$work/p2.json") == "(1, 'des-contoso', False)" ]]; echo $?)"

set +e; NO_COLOR=1 "$kvr" plan -f "$A" >"$work/plan.1" 2>&1; set -e
grep -A12 "version ${v1:0:8}: disable" "$work/plan.1" >"$work/step.1" || true
check "plan: the current version's disable waits for the versionless disk encryption set" \
    "$(grep -q "waiting for: disk encryption set 'des-contoso' ($DES) uses key 'backup-dek' (versionless: its current version)" "$work/step.1"; echo $?)"
check "plan: ... and for the pinned storage account" \
    "$(grep -q "waiting for: storage account 'stcontosodata' ($ST) uses key 'backup-dek' version ${v1:0:8}" "$work/step.1"; echo $?)"

kvr_apply "apply after/" 3 -f "$A" --wait 20s
azsim_advance $((31 * 86400))
kvr_apply "apply after/ 31 days later" 3 -f "$A"
azsim_advance $((61 * 86400))
kvr_apply "apply after/ 92 days later: the storage account holds the old version" 3 -f "$A"
check "blocked on the storage account, not on the disk encryption set" \
    "$(grep -q "blocked: .*stcontosodata" "$work/err.$kvr_n" && ! grep -q "des-contoso" "$work/err.$kvr_n"; echo $?)"
arm=$(azsim_token "$KVR_ARM_ENDPOINT") # the clock moved past the first tokens' expiry
kvtok=$(azsim_token "https://vault.localhost:$AZSIM_PORT")
vs=$(versions)
check "the old version is still enabled ($vs)" "$([[ $vs == "$v1:True "*":True" ]]; echo $?)"

v2=$(versions | tr ' ' '\n' | tail -1 | cut -d: -f1)
storage_put "$v2" >/dev/null
kvr_apply "apply after/: the storage account uses the new version" 0 -f "$A"
vs=$(versions)
check "the old version is disabled now ($vs)" "$([[ $vs == "$v1:False $v2:True" ]]; echo $?)"
kvr_plan_empty "$A"
# export tells who uses what in the vault, as comments (issue #21 on #16's export)
set +e; "$kvr" export -o "$work/exported" -q >"$work/export.out" 2>"$work/export.err"; rc=$?; set -e
check "export: exit $rc, the dependents as comments on their vault" \
    "$([[ $rc == 0 ]] && grep -q "^ *# used by storage account 'stcontosodata' (/subscriptions/.*/storageAccounts/stcontosodata):" "$work/exported/vaults.yaml" &&
        grep -q "^ *# used by disk encryption set 'des-contoso' " "$work/exported/vaults.yaml"; echo $?)"
[[ $rc == 0 ]] || cat "$work/export.err"
check "  and the exported repository validates" "$("$kvr" validate -f "$work/exported" >/dev/null 2>&1; echo $?)"
azsim_stop # its sanitizer report, if any, is written at exit
e2e_sanitizer_scan
e2e_finish

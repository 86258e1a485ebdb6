#!/usr/bin/env bash
# ARM long-running operations end to end: azsim makes every vault PUT a long-running operation
# (--arm-async 3: 201, provisioningState RegisteringDns, Azure-AsyncOperation InProgress for 3
# polls, and a vault host that does not resolve until it is done), and kvreconcile must wait for
# each vault before it touches its data plane. Then a vault whose creation fails (azsim: names
# starting with "lrofail") must stop the apply with Azure's code and message, exit 1, and nothing
# done after it. A vault deleted by hand is recovered (createMode: recover) the same way. Without
# the polling, the first apply fails: the keys' vault does not resolve yet.
# usage: test_arm_lro.sh KVRECONCILE AZSIM
set -euo pipefail
. "$(dirname "$0")/../e2e/lib.sh"
scenario_init "$1" "$2" new-vault
azsim_start "$azsim" ${sub:+--subscription "$sub"} --rbac-delay 3 --data-keys 20 --arm-async 3
stats() { curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/stats" | json "d['requests'].get('$1', 0)"; }
kv_total() { curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/stats" |
    json "sum(n for k, n in d['requests'].items() if k.startswith('kv.'))"; }

# kvr NAME ARGS...: runs kvreconcile, stdout to $work/out.NAME, stderr to $work/err.NAME; sets rc
kvr() {
    local name=$1
    shift
    set +e
    "$kvr" "$@" >"$work/out.$name" 2>"$work/err.$name"
    rc=$?
    set -e
}

# 1. the example's before/ converges, every vault Succeeded before its first data-plane call
kvr 1 apply -f "$B" --wait 2m
check "apply before/ with async vault creation: exit $rc" "$([[ $rc == 0 ]]; echo $?)"
[[ $rc == 0 ]] || tail -20 "$work/err.1"
polls=$(stats arm.operationStatuses.get)
check "the Azure-AsyncOperation URL was polled ($polls polls, >= 4 per vault)" \
    "$([[ $polls -ge 4 ]]; echo $?)"
early=$(stats kv.vault-registering-dns)
check "no data-plane call reached a vault still registering its DNS name ($early)" \
    "$([[ $early == 0 ]]; echo $?)"
tok=$(azsim_token "$KVR_ARM_ENDPOINT")
state=$(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $tok" \
    "$KVR_ARM_ENDPOINT/subscriptions/$AZURE_SUBSCRIPTION_ID/resourceGroups/rg-contoso-backup-weu/providers/Microsoft.KeyVault/vaults/kv-contoso-bkp-weu?api-version=2024-11-01" |
    json 'd["properties"]["provisioningState"]')
check "the vault is Succeeded ($state)" "$([[ $state == Succeeded ]]; echo $?)"
kvr 2 plan -f "$B" --detailed-exitcode
check "converged: plan of before/ is empty (exit $rc)" "$([[ $rc == 0 ]]; echo $?)"

# 2. recover (createMode: recover) is the same long-running PUT: deleted by hand, brought back
vault_url="$KVR_ARM_ENDPOINT/subscriptions/$AZURE_SUBSCRIPTION_ID/resourceGroups/rg-contoso-backup-weu/providers/Microsoft.KeyVault/vaults/kv-contoso-bkp-weu?api-version=2024-11-01"
curl -sS --cacert "$AZSIM_CA" -X DELETE -H "Authorization: Bearer $tok" "$vault_url" >/dev/null
polls=$(stats arm.operationStatuses.get)
kvr 4 apply -f "$B" --wait 2m
check "apply after the vault was deleted: recovered, exit $rc" "$([[ $rc == 0 ]]; echo $?)"
[[ $rc == 0 ]] || tail -20 "$work/err.4"
check "the recover was polled too" "$(grep -q 'recover the soft-deleted vault' "$work/err.4" &&
    [[ $(stats arm.operationStatuses.get) -ge $((polls + 4)) ]]; echo $?)"
check "still no data-plane call to a vault registering its DNS name" \
    "$([[ $(stats kv.vault-registering-dns) == 0 ]]; echo $?)"

# 3. a vault whose long-running creation fails: clear error, exit 1, nothing after it
mkdir -p "$work/fail"
cat >"$work/fail/estate.yaml" <<EOF
apiVersion: kvreconcile/v1
subscription: $AZURE_SUBSCRIPTION_ID
vaults:
  - name: lrofail-vault
    resourceGroup: rg-lro-fail
    location: westeurope
    rbac: true
keys:
  - vault: lrofail-vault
    name: k1
    type: RSA
    size: 2048
    ops: [wrapKey, unwrapKey]
EOF
kv_before=$(kv_total)
puts_before=$(stats arm.vaults.put)
kvr 3 apply -f "$work/fail" --wait 1m
check "apply of a vault whose creation fails: exit $rc" "$([[ $rc == 1 ]]; echo $?)"
check "the error names the operation, the vault and Azure's code and message" \
    "$(grep -q "create vault 'lrofail-vault': the long-running operation failed: VaultProvisioningFailed: The provisioning" "$work/err.3"; echo $?)"
[[ $rc == 1 ]] && grep -q "VaultProvisioningFailed" "$work/err.3" || cat "$work/err.3"
check "nothing after the failed step: one vault PUT, no data-plane call" \
    "$([[ $(stats arm.vaults.put) == $((puts_before + 1)) && $(kv_total) == "$kv_before" ]]; echo $?)"

# 4. the other ways to be told where to poll: Location only, no header at all (GET the vault until
#    its provisioningState is terminal); and an Azure-AsyncOperation URL on another host, which
#    must be refused before the ARM token goes there
small() { # DIR VAULT
    mkdir -p "$1"
    cat >"$1/estate.yaml" <<EOF
apiVersion: kvreconcile/v1
subscription: $AZURE_SUBSCRIPTION_ID
vaults:
  - name: $2
    resourceGroup: rg-lro-modes
    location: westeurope
    rbac: true
keys:
  - vault: $2
    name: k1
    type: RSA
    size: 2048
    ops: [wrapKey, unwrapKey]
EOF
}
mode() { curl -sS --cacert "$AZSIM_CA" -X POST "$AZSIM_URL/arm/async" -d "{\"polls\":2,\"headers\":\"$1\"}" >/dev/null; }
for m in location:arm.operationResults.get none:arm.vaults.get; do
    headers=${m%%:*} counter=${m#*:}
    mode "$headers"
    small "$work/$headers" "kv-lro-$headers"
    before=$(stats "$counter")
    kvr $headers apply -f "$work/$headers" --wait 1m
    check "headers '$headers': apply exit $rc, polled with $counter ($(($(stats "$counter") - before)))" \
        "$([[ $rc == 0 && $(stats "$counter") -ge $((before + 3)) ]]; echo $?)"
    [[ $rc == 0 ]] || tail -20 "$work/err.$headers"
done
check "no data-plane call to a vault registering its DNS name in any mode" \
    "$([[ $(stats kv.vault-registering-dns) == 0 ]]; echo $?)"
mode foreign
small "$work/foreign" kv-lro-foreign
kvr foreign apply -f "$work/foreign" --wait 1m
check "a poll URL on another host: exit $rc" "$([[ $rc == 1 ]]; echo $?)"
check "... refused, naming the URL and the ARM endpoint" \
    "$(grep -q "refusing to poll 'https://attacker.localhost:$AZSIM_PORT/subscriptions/.*': it is not on the ARM endpoint" "$work/err.foreign"; echo $?)"
[[ $rc == 1 ]] || tail -20 "$work/err.foreign"
check "... and no request (with the ARM token) went to that host" \
    "$([[ $(stats unknown-host) == 0 ]]; echo $?)"

# 5. the switch at run time, and synchronous again: a PUT answers 200 without polling
curl -sS --cacert "$AZSIM_CA" -X POST "$AZSIM_URL/arm/async" -d '{"polls":0}' >/dev/null
code=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$AZSIM_CA" -X PUT \
    -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' \
    "$KVR_ARM_ENDPOINT/subscriptions/$AZURE_SUBSCRIPTION_ID/resourceGroups/rg-contoso-backup-weu/providers/Microsoft.KeyVault/vaults/kv-lro-sync?api-version=2024-11-01" \
    -d "{\"location\":\"westeurope\",\"properties\":{\"tenantId\":\"$AZURE_TENANT_ID\",\"sku\":{\"family\":\"A\",\"name\":\"standard\"},\"accessPolicies\":[]}}")
check "POST /arm/async {polls:0}: vault PUT is synchronous again (http $code)" \
    "$([[ $code == 200 ]]; echo $?)"
e2e_sanitizer_scan
e2e_finish

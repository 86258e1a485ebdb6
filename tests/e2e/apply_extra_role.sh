#!/usr/bin/env bash
# Managed principals hold exactly the access the YAML declares (issue #15): Key Vault
# Administrator given out of band to a declared app on its vault is planned away (exit 2) and
# removed by apply, after which the plan is empty; the app's declared assignment stays, and so
# does a grant of a principal the YAML never declared (reported by nobody, touched by nobody).
# usage: apply_extra_role.sh KVRECONCILE AZSIM
set -euo pipefail
. "$(dirname "$0")/lib.sh"
rotate_key_before_init "$1" "$2"
arm=$(azsim_token "$KVR_ARM_ENDPOINT")
VS="/subscriptions/$AZURE_SUBSCRIPTION_ID/resourceGroups/rg-contoso-backup-weu/providers/Microsoft.KeyVault/vaults/kv-contoso-bkp-weu"
ADMIN=00482a5a-887f-4fb3-b363-3b7fe8e74483
roles() { curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $arm" \
    "$KVR_ARM_ENDPOINT$VS/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01"; }
app_sp=$(roles | json '[a["properties"]["principalId"] for a in d["value"] if a["properties"]["roleDefinitionId"].endswith("e147488a-f6f5-4113-8e2d-b22465e65bf6")][0]')
me=$(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $(azsim_token "$KVR_GRAPH_ENDPOINT")" \
    "$KVR_GRAPH_ENDPOINT/v1.0/servicePrincipals?\$filter=appId%20eq%20'$AZURE_CLIENT_ID'" | json 'd["value"][0]["id"]')
grant() { # GUID PRINCIPAL
    curl -sS --fail --cacert "$AZSIM_CA" -X PUT -H "Authorization: Bearer $arm" -H 'Content-Type: application/json' \
        "$KVR_ARM_ENDPOINT$VS/providers/Microsoft.Authorization/roleAssignments/$1?api-version=2022-04-01" \
        -d "{\"properties\":{\"roleDefinitionId\":\"/subscriptions/$AZURE_SUBSCRIPTION_ID/providers/Microsoft.Authorization/roleDefinitions/$ADMIN\",\"principalId\":\"$2\",\"principalType\":\"ServicePrincipal\"}}" >/dev/null
}
grant 5b1d7f3e-0c1a-4e52-9d7e-1f2a3b4c5d6e "$app_sp"
grant 6c2e8a4f-1d2b-4f63-8e8f-2a3b4c5d6e7f "$me"
has() { roles | json "any(a['name'] == '$1' for a in d['value'])"; }
check "out of band: Key Vault Administrator for the app and for another principal" \
    "$([[ $(has 5b1d7f3e-0c1a-4e52-9d7e-1f2a3b4c5d6e) == True && $(has 6c2e8a4f-1d2b-4f63-8e8f-2a3b4c5d6e7f) == True ]]; echo $?)"
set +e; NO_COLOR=1 "$kvr" plan -f "$B" --detailed-exitcode >"$work/plan.txt" 2>&1; rc=$?; set -e
check "plan: exit 2 ($rc)" "$([[ $rc == 2 ]]; echo $?)"
check "  removes the app's undeclared Key Vault Administrator, with no gate" \
    "$(grep -q "^  1 - role 'Key Vault Administrator' for app 'aos-backup': remove" "$work/plan.txt" &&
       ! grep -q 'waiting for' "$work/plan.txt"; echo $?)"
check "  and nothing else" "$(grep -q 'Plan: 0 to create, 0 to change, 1 to retire, 0 waiting' "$work/plan.txt"; echo $?)"
[[ $rc == 2 ]] || cat "$work/plan.txt"
kvr_apply "apply" 0 -f "$B"
check "the app's extra grant is gone" "$([[ $(has 5b1d7f3e-0c1a-4e52-9d7e-1f2a3b4c5d6e) == False ]]; echo $?)"
check "the other principal's grant is untouched" "$([[ $(has 6c2e8a4f-1d2b-4f63-8e8f-2a3b4c5d6e7f) == True ]]; echo $?)"
check "the app's declared assignment stays" \
    "$(roles | json 'any(a["properties"]["roleDefinitionId"].endswith("e147488a-f6f5-4113-8e2d-b22465e65bf6") for a in d["value"])' | grep -qx True; echo $?)"
kvr_plan_empty "$B"
check "  the runner's own grant is not listed as an undeclared principal's" \
    "$(! NO_COLOR=1 "$kvr" plan -f "$B" 2>&1 | grep -q "for $me"; echo $?)"

# Another principal's grants are listed (never changed), on a lone vault (its own list) and on
# two vaults of one resource group (one list of the group's assignments).
graph=$(azsim_token "$KVR_GRAPH_ENDPOINT")
other_app=$(curl -sS --cacert "$AZSIM_CA" -X POST -H "Authorization: Bearer $graph" -H 'Content-Type: application/json' \
    "$KVR_GRAPH_ENDPOINT/v1.0/applications" -d '{"displayName":"Someone else'"'"'s reporting tool"}' | json 'd["appId"]')
other=$(curl -sS --cacert "$AZSIM_CA" -X POST -H "Authorization: Bearer $graph" -H 'Content-Type: application/json' \
    "$KVR_GRAPH_ENDPOINT/v1.0/servicePrincipals" -d "{\"appId\":\"$other_app\"}" | json 'd["id"]')
READER=21090545-7ca7-4776-b22c-e363652d74d2
grant_to() { # SCOPE GUID PRINCIPAL ROLE
    curl -sS --fail --cacert "$AZSIM_CA" -X PUT -H "Authorization: Bearer $arm" -H 'Content-Type: application/json' \
        "$KVR_ARM_ENDPOINT$1/providers/Microsoft.Authorization/roleAssignments/$2?api-version=2022-04-01" \
        -d "{\"properties\":{\"roleDefinitionId\":\"/subscriptions/$AZURE_SUBSCRIPTION_ID/providers/Microsoft.Authorization/roleDefinitions/$4\",\"principalId\":\"$3\",\"principalType\":\"ServicePrincipal\"}}" >/dev/null
}
grant_to "$VS/keys/backup-dek" 7d3e9b5a-2e3c-4a74-9f90-3b4c5d6e7f80 "$other" "$READER"
set +e; NO_COLOR=1 "$kvr" plan -f "$B" --detailed-exitcode >"$work/plan2.txt" 2>&1; rc=$?; set -e
check "plan: no change for another principal's grant (exit $rc)" "$([[ $rc == 0 ]]; echo $?)"
check "  it is listed: Key Vault Reader for $other on key 'backup-dek'" \
    "$(grep -q "? roleAssignment 'Key Vault Reader for $other' in vault 'kv-contoso-bkp-weu': on key 'backup-dek'" "$work/plan2.txt"; echo $?)"
T="$work/two"
cp -r "$B" "$T"
python3 - "$T/vaults.yaml" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
s = s.replace("\nretention:", "  - name: kv-contoso-bkp-weu2\n    resourceGroup: rg-contoso-backup-weu\n    location: westeurope\n    softDeleteDays: 7\n\nretention:", 1)
open(p, "w").write(s)
PY
kvr_apply "apply with a second vault in the group" 0 -f "$T" --wait 1m
grant_to "${VS}2" 8e4f0c6b-3f4d-4b85-8a01-4c5d6e7f8091 "$other" "$READER"
set +e; NO_COLOR=1 "$kvr" plan -f "$T" --detailed-exitcode >"$work/plan3.txt" 2>&1; rc=$?; set -e
check "plan of two vaults in one group: no change (exit $rc)" "$([[ $rc == 0 ]]; echo $?)"
check "  both vaults list the other principal's grant" \
    "$(grep -q "? roleAssignment 'Key Vault Reader for $other' in vault 'kv-contoso-bkp-weu': on key 'backup-dek'" "$work/plan3.txt" &&
        grep -q "? roleAssignment 'Key Vault Reader for $other' in vault 'kv-contoso-bkp-weu2'$" "$work/plan3.txt"; echo $?)"
# A group whose one list of assignments is over the response cap (32 MiB; here 40,000 grants on
# vaults that no longer exist, put into the saved state since azsim's API would take minutes):
# the plan reads the group's two vaults one by one instead, and lists the same grants.
if python3 -c 'import cryptography.hazmat.primitives.ciphers.aead' 2>/dev/null; then
    azsim_stop
    python3 "$root/tests/azsim/reseal.py" "$work/sim" "
import uuid
at = '/subscriptions/$AZURE_SUBSCRIPTION_ID/resourceGroups/rg-contoso-backup-weu/providers/Microsoft.KeyVault/vaults/kv-gone-'
d['assignments'] += [{'name': str(uuid.UUID(int=i + 1)), 'scope': at + '%05d' % i, 'role': '$READER',
                      'principal': str(uuid.UUID(int=(1 << 100) + i)), 'principalType': 'ServicePrincipal',
                      'created': 0, 'effective': 0} for i in range(40000)]"
    # on a new port: while azsim is down, a parallel test's outgoing connection may be given the
    # old one as its source port, and azsim then cannot listen on it again
    mv "$work/azsim.err" "$work/azsim.err.1"
    azsim_start "$azsim" --subscription "$AZURE_SUBSCRIPTION_ID" --rbac-delay 0 --data-keys 20 --rewrap-rate 10
    lists() { curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/stats" | json 'd["requests"].get("arm.roleAssignments.list", 0)'; }
    curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/stats" >"$work/stats4.before"
    l0=$(lists)
    set +e; NO_COLOR=1 "$kvr" plan -f "$T" --detailed-exitcode >"$work/plan4.txt" 2>&1; rc=$?; set -e
    l1=$(lists)
    check "plan with 40,000 grants in the group: no change (exit $rc)" "$([[ $rc == 0 ]]; echo $?)"
    [[ $rc == 0 ]] || { cat "$work/plan4.txt"; tail -20 "$work/azsim.err"; }
    check "  the group's list was tried, then each vault's ($((l1 - l0)) lists)" \
        "$([[ $((l1 - l0)) == 3 ]]; echo $?)"
    [[ $((l1 - l0)) == 3 ]] || curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/stats" |
        python3 -c 'import json, sys; a = json.load(open(sys.argv[1]))["requests"]; b = json.load(sys.stdin)["requests"]
print("requests during the plan:", {k: v - a.get(k, 0) for k, v in b.items() if v != a.get(k, 0)})' "$work/stats4.before"
    check "  both vaults list the other principal's grant" \
        "$(grep -q "? roleAssignment 'Key Vault Reader for $other' in vault 'kv-contoso-bkp-weu': on key 'backup-dek'" "$work/plan4.txt" &&
            grep -q "? roleAssignment 'Key Vault Reader for $other' in vault 'kv-contoso-bkp-weu2'$" "$work/plan4.txt"; echo $?)"
else
    echo "skip - a group list over the response cap: python3 has no cryptography module to reseal a state"
fi
e2e_finish

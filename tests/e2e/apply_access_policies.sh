#!/usr/bin/env bash
# Access policies of an access-policy vault (rbac: false) follow the YAML after the vault exists:
# a permission added or taken away, an app's entry removed; the entry of a principal that is not
# a declared app (a person, another service, the identity kvreconcile runs as) is left alone.
# usage: apply_access_policies.sh KVRECONCILE AZSIM
set -euo pipefail
. "$(dirname "$0")/lib.sh"
kvr=$(realpath "$1")
azsim=$(realpath "$2")
e2e_init
azsim_start "$azsim" --rbac-delay 0
mkdir -p "$work/v1" "$work/v2"
estate() { # DIR ONE_KEYS TWO_POLICY
    cat >"$1/estate.yaml" <<EOF
apiVersion: kvreconcile/v1
subscription: $AZURE_SUBSCRIPTION_ID
apps:
  - name: ap-one
    displayName: kvr-e2e ap-one
  - name: ap-two
    displayName: kvr-e2e ap-two
vaults:
  - name: kv-e2e-policies
    resourceGroup: rg-e2e-policies
    location: westeurope
    rbac: false
    accessPolicies:
      - app: ap-one
        keys: $2
$3
EOF
}
estate "$work/v1" "[get, list]" "      - app: ap-two
        secrets: [get]"
estate "$work/v2" "[get, wrapKey]" ""
tok=$(azsim_token "$KVR_ARM_ENDPOINT")
vault_url="$KVR_ARM_ENDPOINT/subscriptions/$AZURE_SUBSCRIPTION_ID/resourceGroups/rg-e2e-policies/providers/Microsoft.KeyVault/vaults/kv-e2e-policies"
policies() { curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $tok" "$vault_url?api-version=2024-11-01"; }
sp_of() {
    curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $(azsim_token "https://graph.localhost:$AZSIM_PORT")" \
        "https://graph.localhost:$AZSIM_PORT/v1.0/servicePrincipals?\$filter=displayName%20eq%20'kvr-e2e%20$1'" |
        json 'd["value"][0]["id"]'
}
perms() { # OID FAMILY -> sorted, lowercased names, or "-" without an entry
    policies | json "' '.join(sorted(p.lower() for e in d['properties']['accessPolicies'] if e['objectId'].lower() == '$1'.lower() for p in e['permissions'].get('$2', []))) or ('-' if not any(e['objectId'].lower() == '$1'.lower() for e in d['properties']['accessPolicies']) else '')"
}
run() { # NAME WANT-EXIT kvreconcile-args...
    local name=$1 want=$2 rc
    shift 2
    set +e
    "$kvr" "$@" >"$work/out.$name" 2>"$work/err.$name"
    rc=$?
    set -e
    check "$name: exit $rc" "$([[ $rc == "$want" ]]; echo $?)"
    [[ $rc == "$want" ]] || { tail -n 20 "$work/err.$name"; tail -n 20 "$work/out.$name"; }
}

run apply-v1 0 apply -f "$work/v1" --wait 1m
one=$(sp_of ap-one)
two=$(sp_of ap-two)
check "v1: ap-one has keys get,list ($(perms "$one" keys))" "$([[ $(perms "$one" keys) == "get list" ]]; echo $?)"
check "v1: ap-two has secrets get ($(perms "$two" secrets))" "$([[ $(perms "$two" secrets) == "get" ]]; echo $?)"
# someone else's entry, added outside the YAML: never planned away
foreign=0f0f0f0f-0000-4000-8000-000000000001
curl -sS --cacert "$AZSIM_CA" -X PUT -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' \
    "$vault_url/accessPolicies/add?api-version=2024-11-01" \
    -d "{\"properties\":{\"accessPolicies\":[{\"tenantId\":\"$AZURE_TENANT_ID\",\"objectId\":\"$foreign\",\"permissions\":{\"keys\":[\"all\"],\"secrets\":[\"all\"]}}]}}" >/dev/null
run plan-v1-converged 0 plan -f "$work/v1" --detailed-exitcode

NO_COLOR=1 run plan-v2 2 plan -f "$work/v2" --detailed-exitcode
check "plan v2 shows ap-one's change" \
    "$(grep -q 'accessPolicies\[ap-one\]: keys=get,list -> keys=get,wrapkey' "$work/out.plan-v2"; echo $?)"
check "plan v2 shows ap-two's entry removed" \
    "$(grep -q 'accessPolicies\[ap-two\]: secrets=get -> none' "$work/out.plan-v2"; echo $?)"
check "plan v2 does not touch the foreign entry" \
    "$(! sed '/^unmanaged /,$d' "$work/out.plan-v2" | grep -q "$foreign"; echo $?)"
check "plan v2 reports it, and only it, as an undeclared principal's access" \
    "$(sed -n '/^unmanaged /,$p' "$work/out.plan-v2" | grep -c "accessPolicy" | grep -qx 1 &&
        grep -q "? accessPolicy '$foreign' in vault" "$work/out.plan-v2"; echo $?)"
run apply-v2 0 apply -f "$work/v2" --wait 1m
check "v2: ap-one has keys get,wrapkey ($(perms "$one" keys))" \
    "$(x=$(perms "$one" keys); [[ $x == "get wrapkey" ]]; echo $?)"
check "v2: ap-two's entry is gone ($(perms "$two" secrets))" "$([[ $(perms "$two" secrets) == "-" ]]; echo $?)"
check "v2: the foreign entry is still there ($(perms "$foreign" keys))" \
    "$([[ $(perms "$foreign" keys) == "all" ]]; echo $?)"
# kvreconcile's own entry, added when it created the vault (else it could not read the vault's
# keys): not a declared app's, so kept
self=$(python3 -c 'import base64, json, sys
t = sys.argv[1].split(".")[1]
print(json.loads(base64.urlsafe_b64decode(t + "=" * (-len(t) % 4)))["oid"])' "$tok")
check "v2: kvreconcile's own entry is kept ($(perms "$self" secrets))" \
    "$([[ $(perms "$self" secrets) == *get* ]]; echo $?)"
run plan-v2-converged 0 plan -f "$work/v2" --detailed-exitcode
e2e_sanitizer_scan
e2e_finish

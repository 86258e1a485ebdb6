#!/usr/bin/env bash
# A declared value that cannot be read (issue #15): plan warns and plans the rest; apply stops
# before any change with exit 1, naming the secret, where it is declared and the variable; with
# the variable set, apply converges; the value appears in no output.
# usage: apply_value_sources.sh KVRECONCILE AZSIM
set -euo pipefail
kvr=$(realpath "$1")
azsim=$(realpath "$2")
. "$(dirname "$0")/lib.sh"
e2e_init
azsim_start "$azsim" --subscription 3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43 --rbac-delay 0
mkdir -p "$work/estate"
cat >"$work/estate/estate.yaml" <<'YAML'
apiVersion: kvreconcile/v1
subscription: 3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43
vaults:
  - name: kv-valsrc
    resourceGroup: rg-valsrc
    location: westeurope
    softDeleteDays: 7
secrets:
  - vault: kv-valsrc
    name: api-token
    fromEnv: KVR_E2E_API_TOKEN
YAML
unset KVR_E2E_API_TOKEN
arm=$(azsim_token "$KVR_ARM_ENDPOINT")
vault_status() {
    curl -sS -o /dev/null -w '%{http_code}' --cacert "$AZSIM_CA" -H "Authorization: Bearer $arm" \
        "$KVR_ARM_ENDPOINT/subscriptions/$AZURE_SUBSCRIPTION_ID/resourceGroups/rg-valsrc/providers/Microsoft.KeyVault/vaults/kv-valsrc?api-version=2024-11-01"
}
set +e
"$kvr" plan -f "$work/estate" >"$work/plan.out" 2>"$work/plan.err"; prc=$?
"$kvr" apply -f "$work/estate" >"$work/apply.out" 2>"$work/apply.err"; arc=$?
set -e
check "plan without the variable: exit 0 ($prc), with a warning naming it" \
    "$([[ $prc == 0 ]] && grep -q "warning: .*api-token.*KVR_E2E_API_TOKEN" "$work/plan.err"; echo $?)"
check "apply without the variable: exit 1 ($arc)" "$([[ $arc == 1 ]]; echo $?)"
check "  naming the secret, its position and the variable" \
    "$(grep -q "error: .*estate.yaml:[0-9]*:[0-9]*: the value of secret 'api-token' in vault 'kv-valsrc' cannot be read: .*KVR_E2E_API_TOKEN.*nothing was changed" "$work/apply.err"; echo $?)"
[[ $arc == 1 ]] || cat "$work/apply.err"
check "  and nothing was changed (no vault: HTTP $(vault_status))" "$([[ $(vault_status) == 404 ]]; echo $?)"
export KVR_E2E_API_TOKEN=Value-Source-Canary-81f3
set +e; "$kvr" apply -f "$work/estate" --wait 1m >"$work/apply2.out" 2>"$work/apply2.err"; arc=$?; set -e
check "with the variable set: apply converges (exit $arc)" "$([[ $arc == 0 ]]; echo $?)"
[[ $arc == 0 ]] || tail -5 "$work/apply2.err"
check "  the vault exists (HTTP $(vault_status))" "$([[ $(vault_status) == 200 ]]; echo $?)"
set +e; "$kvr" plan -f "$work/estate" --detailed-exitcode >"$work/plan2.out" 2>&1; prc=$?; set -e
check "  and a plan is empty (exit $prc)" "$([[ $prc == 0 ]]; echo $?)"
check "the value appears in no output" "$(! grep -rq Value-Source-Canary "$work"/*.out "$work"/*.err; echo $?)"
e2e_finish

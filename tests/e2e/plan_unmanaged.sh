#!/usr/bin/env bash
# Objects of a declared vault that the YAML does not declare (issue #15): reported by plan in
# text and JSON (and nothing changes), ignored with unmanaged: ignore, and with unmanaged: retire
# recorded, then soft-deleted (recoverable, not purged) once retention.keys has passed.
# usage: plan_unmanaged.sh KVRECONCILE AZSIM
set -euo pipefail
kvr=$(realpath "$1")
azsim=$(realpath "$2")
. "$(dirname "$0")/lib.sh"
e2e_init
azsim_start "$azsim" --subscription 3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43 --rbac-delay 0
mkdir -p "$work/estate"
estate() { # UNMANAGED
    cat >"$work/estate/estate.yaml" <<YAML
apiVersion: kvreconcile/v1
subscription: 3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43
retention:
  keys: 30d
vaults:
  - name: kv-unmanaged
    resourceGroup: rg-unmanaged
    location: westeurope
    softDeleteDays: 7
    unmanaged: $1
keys:
  - vault: kv-unmanaged
    name: declared-key
    type: EC
    curve: P-256
secrets:
  - vault: kv-unmanaged
    name: declared-secret
    generate: {length: 24}
YAML
}
estate report
set +e; "$kvr" apply -f "$work/estate" --wait 1m >"$work/apply1.out" 2>"$work/apply1.err"; rc=$?; set -e
check "apply: the declared vault, key and secret (exit $rc)" "$([[ $rc == 0 ]]; echo $?)"
[[ $rc == 0 ]] || tail -5 "$work/apply1.err"
kv=$(azsim_token "https://vault.localhost:$AZSIM_PORT")
V="https://kv-unmanaged.vault.localhost:$AZSIM_PORT"
kvcall() { # METHOD PATH [BODY]
    code=$(curl -sS -o "$work/kv.json" -w '%{http_code}' --cacert "$AZSIM_CA" -X "$1" "$V$2" \
        -H "Authorization: Bearer $kv" -H 'Content-Type: application/json' ${3:+-d "$3"})
    cat "$work/kv.json"
}
# made by hand, as a team would: a secret and a key nobody declared
kvcall PUT "/secrets/hand-made?api-version=7.5" '{"value":"Unmanaged-Canary-7d1e"}' >/dev/null
kvcall POST "/keys/legacy-cmk/create?api-version=7.5" '{"kty":"RSA","key_size":2048}' >/dev/null
set +e
NO_COLOR=1 "$kvr" plan -f "$work/estate" --detailed-exitcode >"$work/plan.out" 2>"$work/plan.err"; prc=$?
"$kvr" plan -f "$work/estate" -o json >"$work/plan.json" 2>/dev/null
set -e
check "plan: no change (exit $prc)" "$([[ $prc == 0 ]]; echo $?)"
check "  the unmanaged section names the secret and the key, not the declared ones" \
    "$(grep -q "^  ? secret 'hand-made' in vault 'kv-unmanaged'$" "$work/plan.out" &&
        grep -q "^  ? key 'legacy-cmk' in vault 'kv-unmanaged'$" "$work/plan.out" &&
        ! grep -q "declared-" "$work/plan.out"; echo $?)"
check "  JSON: unmanaged lists both" \
    "$([[ $(json 'sorted((u["kind"], u["name"]) for u in d["unmanaged"])' <"$work/plan.json") == "[('key', 'legacy-cmk'), ('secret', 'hand-made')]" ]]; echo $?)"
estate ignore
NO_COLOR=1 "$kvr" plan -f "$work/estate" >"$work/plan.ignore" 2>&1 || true
check "unmanaged: ignore: not listed" "$(! grep -q "hand-made\|legacy-cmk" "$work/plan.ignore"; echo $?)"
estate retire
set +e; "$kvr" apply -f "$work/estate" >"$work/apply2.out" 2>"$work/apply2.err"; rc=$?; set -e
check "unmanaged: retire: apply records them and waits for retention (exit $rc)" "$([[ $rc == 3 ]]; echo $?)"
kvcall GET "/secrets/hand-made?api-version=7.5" >/dev/null
check "  the secret is still there, marked" \
    "$([[ $code == 200 ]] && json 'd["tags"]["kvr-superseded-at"]' <"$work/kv.json" >/dev/null; echo $?)"
# an app (in a resource group the estate never names) reads the hand-made secret by reference
arm=$(azsim_token "$KVR_ARM_ENDPOINT")
armcall() { # METHOD PATH BODY
    code=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$AZSIM_CA" -X "$1" \
        -H "Authorization: Bearer $arm" -H 'Content-Type: application/json' "$KVR_ARM_ENDPOINT$2" ${3:+-d "$3"})
}
S="/subscriptions/$AZURE_SUBSCRIPTION_ID"
APP="$S/resourceGroups/rg-unmanaged-web/providers/Microsoft.Web/sites/app-unmanaged-reader"
armcall PUT "$S/resourceGroups/rg-unmanaged-web?api-version=2021-04-01" '{"location":"westeurope"}'
armcall PUT "$APP?api-version=2023-12-01" '{"location":"westeurope","kind":"app","identity":{"type":"SystemAssigned"},"properties":{}}'
settings() { # VALUE
    armcall PUT "$APP/config/appsettings?api-version=2023-12-01" "{\"properties\":{\"TOKEN\":\"$1\"}}"
}
settings "@Microsoft.KeyVault(SecretUri=$V/secrets/hand-made/)"
check "an app setting references the hand-made secret ($code)" "$([[ $code == 200 ]]; echo $?)"
azsim_advance $((31 * 86400))
arm=$(azsim_token "$KVR_ARM_ENDPOINT") # the old tokens expired with the clock
set +e; NO_COLOR=1 "$kvr" apply -f "$work/estate" >"$work/apply3.out" 2>"$work/apply3.err"; rc=$?; set -e
check "31 days later: the key goes, the secret waits for the app that uses it (exit $rc)" \
    "$([[ $rc == 3 ]] && grep -q "app 'app-unmanaged-reader' ($APP) uses secret 'hand-made' (app setting 'TOKEN')" "$work/apply3.err"; echo $?)"
[[ $rc == 3 ]] || tail -5 "$work/apply3.err"
settings "not a reference any more"
set +e; "$kvr" apply -f "$work/estate" >"$work/apply4.out" 2>"$work/apply4.err"; rc=$?; set -e
check "once the app no longer uses it: apply converges (exit $rc)" "$([[ $rc == 0 ]]; echo $?)"
[[ $rc == 0 ]] || tail -5 "$work/apply4.err"
kv=$(azsim_token "https://vault.localhost:$AZSIM_PORT") # the old token expired with the clock
kvcall GET "/secrets/hand-made?api-version=7.5" >/dev/null
check "  the secret is gone ($code)" "$([[ $code == 404 ]]; echo $?)"
kvcall GET "/deletedsecrets/hand-made?api-version=7.5" >/dev/null
check "  and recoverable, not purged ($code)" "$([[ $code == 200 ]]; echo $?)"
kvcall GET "/deletedkeys/legacy-cmk?api-version=7.5" >/dev/null
check "  the key likewise ($code)" "$([[ $code == 200 ]]; echo $?)"
kvcall GET "/keys/declared-key?api-version=7.5" >/dev/null
check "  the declared key stays ($code)" "$([[ $code == 200 ]]; echo $?)"
check "the secret's value appears in no output" \
    "$(! grep -rq Unmanaged-Canary "$work"/*.out "$work"/*.err "$work"/plan.*; echo $?)"
e2e_finish

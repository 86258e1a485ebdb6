#!/usr/bin/env bash
# A credential's storeIn moves to another vault (issue #15): the client secret is kept, its stored
# value is copied to the new place before anything reads it there, the fromAppCredential secret
# follows it, and a second apply is empty. Before, apply failed with a raw 404 on every run.
# usage: apply_credential_store_move.sh KVRECONCILE AZSIM
set -euo pipefail
kvr=$(realpath "$1")
azsim=$(realpath "$2")
. "$(dirname "$0")/lib.sh"
e2e_init
azsim_start "$azsim" --subscription 3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43 --rbac-delay 0
mkdir -p "$work/estate"
estate() { # STORE_VAULT STORE_SECRET
    cat >"$work/estate/estate.yaml" <<YAML
apiVersion: kvreconcile/v1
subscription: 3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43
vaults:
  - name: kv-store-a
    resourceGroup: rg-store
    location: westeurope
    softDeleteDays: 7
  - name: kv-store-b
    resourceGroup: rg-store
    location: westeurope
    softDeleteDays: 7
apps:
  - name: backup-app
    displayName: Store move backup app
    credentials:
      - name: "2026-12"
        lifetime: 180d
        overlap: 14d
        storeIn:
          vault: $1
          secret: $2
secrets:
  - vault: kv-store-b
    name: backup-app-client-secret
    fromAppCredential:
      app: backup-app
      credential: "2026-12"
YAML
}
kv=$(azsim_token "https://vault.localhost:$AZSIM_PORT")
graph=$(azsim_token "$KVR_GRAPH_ENDPOINT")
value() { # VAULT SECRET
    curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $kv" \
        "https://$1.vault.localhost:$AZSIM_PORT/secrets/$2?api-version=7.5" | json 'd.get("value", "(none)")'
}
tag() { # VAULT SECRET
    curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $kv" \
        "https://$1.vault.localhost:$AZSIM_PORT/secrets/$2?api-version=7.5" |
        json 'd.get("tags", {}).get("kvr-credential-key-id", "(none)")'
}
key_ids() {
    curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $graph" \
        "$KVR_GRAPH_ENDPOINT/v1.0/applications?\$filter=displayName%20eq%20'Store%20move%20backup%20app'" |
        json '" ".join(sorted(c["keyId"] for a in d["value"] for c in a["passwordCredentials"]))'
}

estate kv-store-a backup-app-cred
set +e; "$kvr" apply -f "$work/estate" --wait 1m >"$work/apply1.out" 2>"$work/apply1.err"; rc=$?; set -e
check "apply: the credential stored in kv-store-a (exit $rc)" "$([[ $rc == 0 ]]; echo $?)"
[[ $rc == 0 ]] || tail -5 "$work/apply1.err"
ids1=$(key_ids)
v1=$(value kv-store-a backup-app-cred)
check "  one client secret ($ids1), stored with its key id" \
    "$([[ $ids1 != *" "* && -n $ids1 && $(tag kv-store-a backup-app-cred) == "$ids1" ]]; echo $?)"

estate kv-store-b backup-app-cred-moved
set +e; NO_COLOR=1 "$kvr" plan -f "$work/estate" >"$work/plan2.out" 2>"$work/plan2.err"; prc=$?; set -e
check "plan: the stored value is copied to its new storeIn, the client secret kept (exit $prc)" \
    "$(grep -q "credential '2026-12': copy its stored value from vault 'kv-store-a' secret 'backup-app-cred' to vault 'kv-store-b' secret 'backup-app-cred-moved' (the client secret itself is kept)" "$work/plan2.out" &&
        grep -q "storeIn: kv-store-a/backup-app-cred -> kv-store-b/backup-app-cred-moved" "$work/plan2.out" &&
        ! grep -q "remove the client secret\|add a client secret" "$work/plan2.out"; echo $?)"
[[ $prc == 0 ]] || cat "$work/plan2.err"
set +e; "$kvr" apply -f "$work/estate" --wait 1m >"$work/apply2.out" 2>"$work/apply2.err"; rc=$?; set -e
check "apply after the move: exit 0 ($rc)" "$([[ $rc == 0 ]]; echo $?)"
[[ $rc == 0 ]] || tail -5 "$work/apply2.err"
check "  the same client secret, no new one ($(key_ids))" "$([[ $(key_ids) == "$ids1" ]]; echo $?)"
check "  its value in kv-store-b, tagged with its key id" \
    "$([[ $(value kv-store-b backup-app-cred-moved) == "$v1" && $(tag kv-store-b backup-app-cred-moved) == "$ids1" ]]; echo $?)"
check "  the fromAppCredential secret holds it" \
    "$([[ $(value kv-store-b backup-app-client-secret) == "$v1" ]]; echo $?)"
set +e; NO_COLOR=1 "$kvr" plan -f "$work/estate" --detailed-exitcode >"$work/plan3.out" 2>"$work/plan3.err"; prc=$?; set -e
check "then a plan is empty (exit $prc)" "$([[ $prc == 0 ]]; echo $?)"
check "  and warns that the old copy is still in kv-store-a" \
    "$(grep -A1 "warning: app 'backup-app' credential '2026-12'" "$work/plan3.out" | grep -q "vault 'kv-store-a' secret 'backup-app-cred' still holds a copy of this client secret"; echo $?)"
check "no client secret value in any output" \
    "$(! grep -rqF -- "$v1" "$work"/*.out "$work"/*.err; echo $?)"
e2e_finish

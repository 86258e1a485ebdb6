#!/usr/bin/env bash
# An app that leaves the YAML is retired (issue #15): kvreconcile registers every app with this
# estate's marker (tag kvr-managed:<subscription>); when the app is no longer declared, apply
# marks it (kvr-retiring-since) and, after retention.appSecrets (7 days), removes its role
# assignments on the estate's vaults and its client secrets, then deletes it: it is in Graph's
# deleted items (restorable for 30 days) and its old client secret no longer gets a token. An app
# declared again before that only loses the mark. The backup service's app and data keys are
# untouched throughout.
# usage: apply_app_retire.sh KVRECONCILE AZSIM
set -euo pipefail
kvr=$(realpath "$1")
azsim=$(realpath "$2")
. "$(dirname "$0")/lib.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
sub=3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43
e2e_init
azsim_start "$azsim" --subscription "$sub" --rbac-delay 0 --data-keys 20 --rewrap-rate 10
E="$work/estate"
mkdir -p "$E"
cp "$root/examples/rotate-key/after/"*.yaml "$E/"
cp "$E/identity.yaml" "$work/identity.without.yaml"
# the exporter: an app of its own, its client secret in the vault, read access to the vault
cat >"$work/identity.with.yaml" <<'YAML'
apiVersion: kvreconcile/v1

apps:
  - name: aos-backup
    displayName: Contoso backup encryption (aos-backup)
    signInAudience: AzureADMyOrg
    credentials:
      - name: "2026-05"
        lifetime: 180d
        overlap: 14d
        storeIn:
          vault: kv-contoso-bkp-weu
          secret: aos-backup-cred-2026-05
  - name: exporter
    displayName: Contoso backup exporter
    credentials:
      - name: "2026-05"
        lifetime: 90d
        overlap: 14d
        storeIn:
          vault: kv-contoso-bkp-weu
          secret: exporter-cred-2026-05

roleAssignments:
  - app: aos-backup
    role: Key Vault Crypto Service Encryption User
    vault: kv-contoso-bkp-weu
    key: backup-dek
  - app: exporter
    role: Key Vault Secrets User
    vault: kv-contoso-bkp-weu
YAML
cp "$work/identity.with.yaml" "$E/identity.yaml"
tokens() { # an hour each: taken again after the clock moves
    graph=$(azsim_token "$KVR_GRAPH_ENDPOINT")
    arm=$(azsim_token "$KVR_ARM_ENDPOINT")
    kv=$(azsim_token "https://vault.localhost:$AZSIM_PORT")
}
tokens
g() { curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $graph" "$KVR_GRAPH_ENDPOINT$1"; }
app() { # DISPLAY_NAME -> the app's JSON ({} when there is none)
    g "/v1.0/applications?\$filter=displayName%20eq%20'${1// /%20}'" | json 'json.dumps(d["value"][0] if d["value"] else {})'
}
roles_of() { # PRINCIPAL_ID -> the number of its role assignments in the subscription
    curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $arm" \
        "$KVR_ARM_ENDPOINT/subscriptions/$sub/providers/Microsoft.Authorization/roleAssignments?\$filter=principalId%20eq%20'$1'&api-version=2022-04-01" |
        json 'len(d["value"])'
}
sp_of() { # APP_ID -> its service principal's object id
    g "/v1.0/servicePrincipals?\$filter=appId%20eq%20'$1'" | json 'd["value"][0]["id"] if d["value"] else ""'
}

kvr_apply "apply with the exporter" 0 -f "$E" --wait 2m
exp=$(app "Contoso backup exporter")
exp_id=$(echo "$exp" | json 'd.get("id", "")')
exp_app_id=$(echo "$exp" | json 'd.get("appId", "")')
exp_sp=$(sp_of "$exp_app_id")
check "the exporter is registered with this estate's marker" \
    "$(echo "$exp" | json '"kvr-managed:'"$sub"'" in d.get("tags", [])' | grep -qx True; echo $?)"
check "  it holds one role assignment" "$([[ $(roles_of "$exp_sp") == 1 ]]; echo $?)"
# its client secret, kept here (never printed) to prove later that it no longer works
exp_secret=$(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $kv" \
    "https://kv-contoso-bkp-weu.vault.localhost:$AZSIM_PORT/secrets/exporter-cred-2026-05?api-version=7.5" |
    json 'd["value"]')
token_rc() { # 0 when the exporter's old client secret still gets a token
    curl -sS --cacert "$AZSIM_CA" "https://login.localhost:$AZSIM_PORT/$AZURE_TENANT_ID/oauth2/v2.0/token" \
        --data-urlencode grant_type=client_credentials --data-urlencode "client_id=$exp_app_id" \
        --data-urlencode "client_secret=$exp_secret" --data-urlencode "scope=$KVR_ARM_ENDPOINT/.default" |
        json '"access_token" in d' | grep -qx True
}
check "  its client secret gets a token" "$(token_rc; echo $?)"

# the exporter leaves the YAML
cp "$work/identity.without.yaml" "$E/identity.yaml"
set +e; "$kvr" plan -f "$E" >"$work/plan1.out" 2>&1; set -e
check "plan: marks the exporter, and retires it after retention" \
    "$(grep -q "app 'Contoso backup exporter': record that it left the desired state" "$work/plan1.out" &&
        grep -q "app 'Contoso backup exporter': remove its access, its client secrets and their stored copies, then delete it" "$work/plan1.out" &&
        grep -q "waiting for: retention P7D" "$work/plan1.out"; echo $?)"
kvr_apply "apply without the exporter (marks it)" "0 3" -f "$E" --wait 1m
check "  marked, still registered, role kept" \
    "$(app "Contoso backup exporter" | json 'any(t.startswith("kvr-retiring-since:'"$sub"'=") for t in d.get("tags", []))' | grep -qx True &&
        [[ $(roles_of "$exp_sp") == 1 ]]; echo $?)"

# declared again within retention: only the mark goes
cp "$work/identity.with.yaml" "$E/identity.yaml"
set +e; "$kvr" plan -f "$E" >"$work/plan2.out" 2>&1; set -e
check "plan: declared again, the mark is taken off" \
    "$(grep -q "app 'exporter': declared again: take off the mark of its retirement" "$work/plan2.out"; echo $?)"
kvr_apply "apply with the exporter again" 0 -f "$E" --wait 1m
check "  the mark is gone, the app and its marker stay" \
    "$(app "Contoso backup exporter" | json 'sorted(d.get("tags", []))' | grep -qx "\['kvr-managed:$sub'\]"; echo $?)"

# and leaves for good
cp "$work/identity.without.yaml" "$E/identity.yaml"
kvr_apply "apply without the exporter (marks it again)" "0 3" -f "$E" --wait 1m
azsim_advance $((3 * 86400))
tokens
kvr_apply "apply 3 days later (within retention)" "0 3" -f "$E" --wait 1m
check "  still registered" "$([[ $(app "Contoso backup exporter") != "{}" ]]; echo $?)"
azsim_advance $((5 * 86400))
tokens
kvr_apply "apply 8 days later (retention passed)" "0 3" -f "$E" --wait 1m
check "  the exporter is no longer an application" "$([[ $(app "Contoso backup exporter") == "{}" ]]; echo $?)"
check "  it is in the directory's deleted items (restorable)" \
    "$(g "/v1.0/directory/deletedItems/$exp_id" | json 'd.get("displayName") == "Contoso backup exporter" and bool(d.get("deletedDateTime"))' | grep -qx True; echo $?)"
check "  its client secrets were removed before" \
    "$(g "/v1.0/directory/deletedItems/$exp_id" | json 'len(d.get("passwordCredentials", []))' | grep -qx 0; echo $?)"
check "  its role assignment is gone" "$([[ $(roles_of "$exp_sp") == 0 ]]; echo $?)"
check "  its old client secret gets no token" "$(! token_rc; echo $?)"
check "  the backup service's app is untouched" \
    "$(app "Contoso backup encryption (aos-backup)" | json 'len(d.get("passwordCredentials", []))' | grep -qx 1; echo $?)"
set +e; "$kvr" plan -f "$E" >"$work/plan3.out" 2>&1; prc=$?; set -e
check "plan: nothing about the exporter any more" \
    "$(! grep -q "Contoso backup exporter" "$work/plan3.out"; echo $?)"
check "  its stored copy is soft-deleted (recoverable), not purged" \
    "$([[ $(curl -sS -o /dev/null -w '%{http_code}' --cacert "$AZSIM_CA" -H "Authorization: Bearer $kv" \
        "https://kv-contoso-bkp-weu.vault.localhost:$AZSIM_PORT/secrets/exporter-cred-2026-05?api-version=7.5") == 404 &&
        $(curl -sS -o /dev/null -w '%{http_code}' --cacert "$AZSIM_CA" -H "Authorization: Bearer $kv" \
        "https://kv-contoso-bkp-weu.vault.localhost:$AZSIM_PORT/deletedsecrets/exporter-cred-2026-05?api-version=7.5") == 200 ]]; echo $?)"

# declared again within Entra's 30 days: the same app comes back, it is not registered anew
cp "$work/identity.with.yaml" "$E/identity.yaml"
set +e; "$kvr" plan -f "$E" >"$work/plan4.out" 2>&1; set -e
check "plan: the exporter is restored, not registered again" \
    "$(grep -q "app 'exporter': restore the Entra application 'Contoso backup exporter'" "$work/plan4.out" &&
        ! grep -q "register the Entra application 'Contoso backup exporter'" "$work/plan4.out"; echo $?)"
kvr_apply "apply with the exporter after its retirement" 0 -f "$E" --wait 2m
back=$(app "Contoso backup exporter")
check "  the same app (id and client id kept), without its retirement mark" \
    "$(echo "$back" | json 'd.get("id") == "'"$exp_id"'" and d.get("appId") == "'"$exp_app_id"'" and not any(t.startswith("kvr-retiring-since:") for t in d.get("tags", []))' | grep -qx True; echo $?)"
check "  with a new client secret and its role again" \
    "$(echo "$back" | json 'len(d.get("passwordCredentials", []))' | grep -qx 1 &&
        [[ $(roles_of "$(sp_of "$exp_app_id")") == 1 ]]; echo $?)"
kvr_plan_empty "$E"
check "consumer: no data key lost" "$([[ $(azsim_lost) == 0 ]]; echo $?)"
if grep -qF -- "$exp_secret" "$work"/out.* "$work"/err.* "$work"/plan*.out; then
    check "no secret value in any output" 1
else
    check "no secret value in any output" 0
fi
e2e_finish

#!/usr/bin/env bash
# kvreconcile export, round trip (issue #16): export an estate, and the written repository
#   - passes `validate` and schema/kvreconcile.schema.json (Python jsonschema),
#   - makes `plan --detailed-exitcode` exit 0 ("No changes") against the same estate,
#   - is written byte for byte the same by a second export,
#   - holds no secret value,
# and a change of one thing in it plans exactly that change.
#
# usage: export_roundtrip.sh KVRECONCILE AZSIM MODE
#   examples   each example's after/ applied (as far as it converges) on a fresh azsim
#   handmade   an estate made only with azsim's REST APIs, as a team would have made it by hand:
#              an access-policy vault and an RBAC vault, keys with and without rotation
#              policies, secrets with several versions, a certificate, several apps, role
#              assignments on a vault and on a key, a user's assignment, a profile Used and an
#              old one Inactive
#   empty      an empty subscription
set -euo pipefail
[[ -z ${E2E_TRACE:-} ]] || set -x
kvr=$(realpath "$1")
azsim=$(realpath "$2")
mode=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"
SUB=3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43
py=/usr/bin/python3
e2e_init

# export_check NAME DIR [EXPORT ARGS...]: the round-trip checks of one export into $work/DIR
export_check() {
    local name=$1 base=$2 dir=$work/$2 rc
    shift 2
    set +e
    "$kvr" export -o "$dir" "$@" >"$work/$base.out" 2>"$work/$base.err"
    rc=$?
    set -e
    check "$name: export exits 0 (got $rc)" "$([[ $rc == 0 ]]; echo $?)"
    [[ $rc == 0 ]] || cat "$work/$base.err"
    check "$name: the layout of the examples" \
        "$([[ -f $dir/vaults.yaml && -f $dir/identity.yaml && -f $dir/encryption.yaml ]]; echo $?)"
    check "$name: schema line" \
        "$(head -1 "$dir/vaults.yaml" | grep -q '^# yaml-language-server: \$schema='; echo $?)"
    check "$name: progress on stderr" "$(grep -q 'export: vaults read\|export: 0 vaults found' "$work/$base.err"; echo $?)"
    set +e
    "$kvr" validate -f "$dir" >"$work/$base.validate" 2>&1
    rc=$?
    set -e
    check "$name: validate passes" "$([[ $rc == 0 ]]; echo $?)"
    [[ $rc == 0 ]] || cat "$work/$base.validate"
    "$py" "$root/tests/schema/check_schema.py" "$root/schema/kvreconcile.schema.json" "$dir" \
        >"$work/$base.schema" 2>&1
    check "$name: valid against schema/kvreconcile.schema.json" "$?"
    set +e
    "$kvr" plan -f "$dir" --detailed-exitcode >"$work/$base.plan" 2>&1
    rc=$?
    set -e
    check "$name: plan says No changes (exit $rc)" \
        "$([[ $rc == 0 ]] && grep -q '^No changes' "$work/$base.plan"; echo $?)"
    [[ $rc == 0 ]] || cat "$work/$base.plan"
    "$kvr" export -o "$dir.again" -q "$@" >/dev/null 2>"$work/$base.again.err"
    check "$name: a second export gives the same bytes" "$(diff -r "$dir" "$dir.again" >&2; echo $?)"
    check "$name: -q is quiet" "$([[ ! -s $work/$base.again.err ]]; echo $?)"
}

# no secret value of the estate in anything export wrote or printed
secret_free() {
    local hit=0 v
    for v in "$@"; do
        grep -rqF -- "$v" "$work"/*.out "$work"/*.err "$work"/ex* 2>/dev/null && hit=1
    done
    check "no secret value in the export or its output" "$hit"
}

case $mode in
empty)
    azsim_start "$azsim" --subscription "$SUB"
    export_check "empty subscription" ex-empty
    # links planted at the temporary names an older export wrote through are never followed
    mkdir -p "$work/ex-links"
    echo precious >"$work/victim"
    for f in vaults identity encryption; do ln -s "$work/victim" "$work/ex-links/$f.yaml.tmp"; done
    "$kvr" export -o "$work/ex-links" -q >/dev/null 2>&1
    check "empty subscription: a link at a predictable temporary name is not followed" \
        "$([[ $(cat "$work/victim") == precious && -f $work/ex-links/vaults.yaml && ! -L $work/ex-links/vaults.yaml ]]; echo $?)"
    check "empty subscription: nothing declared" \
        "$(! grep -q '^vaults:\|^apps:\|^keys:' "$work"/ex-empty/*.yaml; echo $?)"
    ;;

examples)
    for example in rotate-key rotate-app-credentials new-vault relocate-region; do
        [[ -z ${AZSIM_PID:-} ]] || azsim_stop
        rm -rf "$work/sim"
        azsim_start "$azsim" --subscription "$SUB" --rbac-delay 0 --data-keys 5
        kvr_apply "$example: apply after/" "0 3" -f "$root/examples/$example/after" --wait 2m
        export_check "$example" "ex-$example" --profiles
        # the written profiles name their key version: no plan re-resolves 'latest'
        check "$example: profiles and active exported" \
            "$(grep -q '^active: ' "$work/ex-$example/encryption.yaml"; echo $?)"
    done
    # change one thing: a tag of the last example's vault; the plan shows exactly that
    sed -i 's/^      env: prod$/      env: staging/' "$work/ex-relocate-region/vaults.yaml"
    set +e
    "$kvr" plan -f "$work/ex-relocate-region" --detailed-exitcode >"$work/changed.plan" 2>&1
    rc=$?
    set -e
    check "one changed tag: plan exits 2" "$([[ $rc == 2 ]]; echo $?)"
    check "one changed tag: exactly one step, the vault's tags" \
        "$(grep -q 'Plan: 0 to create, 1 to change, 0 to retire' "$work/changed.plan" &&
            grep -q 'update properties' "$work/changed.plan"; echo $?)"
    ;;

handmade)
    azsim_start "$azsim" --subscription "$SUB" --rbac-delay 0 --data-keys 5
    P=$AZSIM_PORT
    call() { # method url token [body] -> body; fails on a non-2xx status
        curl -sS --fail-with-body --cacert "$AZSIM_CA" -X "$1" "$2" -H "Authorization: Bearer $3" \
            -H 'Content-Type: application/json' ${4:+--data "$4"}
    }
    ARM="$KVR_ARM_ENDPOINT"
    GRAPH="$KVR_GRAPH_ENDPOINT"
    PROF="$KVR_PROFILE_ENDPOINT"
    arm=$(azsim_token "$ARM")
    graph=$(azsim_token "$GRAPH")
    kv=$(azsim_token "https://vault.localhost:$P")
    prof=$(azsim_token "$PROF")
    RG=rg-payments-prod
    G="$ARM/subscriptions/$SUB/resourceGroups/$RG"
    ROLE="/subscriptions/$SUB/providers/Microsoft.Authorization/roleDefinitions"
    call PUT "$G?api-version=2021-04-01" "$arm" '{"location":"northeurope"}' >/dev/null

    # three apps, each with a client secret made by hand (not kvr:...), and their principals
    mkapp() { # display name -> "appId objectId spId secretText keyId"
        local a oid aid pw sp
        a=$(call POST "$GRAPH/v1.0/applications" "$graph" "{\"displayName\":\"$1\",\"signInAudience\":\"AzureADMyOrg\"}")
        oid=$(echo "$a" | json 'd["id"]')
        aid=$(echo "$a" | json 'd["appId"]')
        pw=$(call POST "$GRAPH/v1.0/applications/$oid/addPassword" "$graph" '{"passwordCredential":{"displayName":"prod 2026"}}')
        sp=$(call POST "$GRAPH/v1.0/servicePrincipals" "$graph" "{\"appId\":\"$aid\"}" | json 'd["id"]')
        echo "$aid $oid $sp $(echo "$pw" | json 'd["secretText"]') $(echo "$pw" | json 'd["keyId"]')"
    }
    read -r pay_app pay_oid pay_sp pay_secret _ <<<"$(mkapp payments-backup)"
    read -r rep_app _ rep_sp rep_secret _ <<<"$(mkapp "Reporting (read-only)")"
    read -r ops_app _ ops_sp ops_secret _ <<<"$(mkapp ops-automation)"

    # an RBAC vault with network rules and tags
    V1=kv-pay-rbac-neu
    call PUT "$G/providers/Microsoft.KeyVault/vaults/$V1?api-version=2024-11-01" "$arm" \
        "{\"location\":\"northeurope\",\"tags\":{\"team\":\"payments\",\"tier\":\"1\"},
          \"properties\":{\"tenantId\":\"$AZURE_TENANT_ID\",\"sku\":{\"family\":\"A\",\"name\":\"premium\"},
          \"enableRbacAuthorization\":true,\"softDeleteRetentionInDays\":30,\"enablePurgeProtection\":true,
          \"networkAcls\":{\"defaultAction\":\"Deny\",\"bypass\":\"AzureServices\",\"ipRules\":[{\"value\":\"192.0.2.0/24\"}]}}}" >/dev/null
    # an access-policy vault, purge protection off: policies for an app, for a person, and for
    # the identity the team's scripts (and this test) run as
    V2=kv-pay-legacy-neu
    USER=5b0e5f0c-1d2e-4c3b-9a8f-0e1d2c3b4a59
    me=$(call GET "$GRAPH/v1.0/servicePrincipals?\$filter=appId%20eq%20'$AZURE_CLIENT_ID'" "$graph" | json 'd["value"][0]["id"]')
    call PUT "$G/providers/Microsoft.KeyVault/vaults/$V2?api-version=2024-11-01" "$arm" \
        "{\"location\":\"northeurope\",
          \"properties\":{\"tenantId\":\"$AZURE_TENANT_ID\",\"sku\":{\"family\":\"A\",\"name\":\"standard\"},
          \"enableRbacAuthorization\":false,\"softDeleteRetentionInDays\":90,
          \"accessPolicies\":[
            {\"tenantId\":\"$AZURE_TENANT_ID\",\"objectId\":\"$rep_sp\",\"permissions\":{\"keys\":[],\"secrets\":[\"get\",\"list\"],\"certificates\":[]}},
            {\"tenantId\":\"$AZURE_TENANT_ID\",\"objectId\":\"$me\",\"permissions\":{\"keys\":[\"all\"],\"secrets\":[\"all\"],\"certificates\":[\"all\"]}},
            {\"tenantId\":\"$AZURE_TENANT_ID\",\"objectId\":\"$USER\",\"permissions\":{\"keys\":[\"all\"],\"secrets\":[\"all\"],\"certificates\":[\"all\"]}}]}}" >/dev/null
    VA="https://$V1.vault.localhost:$P"
    VB="https://$V2.vault.localhost:$P"

    # keys: two versions and a rotation policy; an EC key without; an HSM-less RSA key elsewhere
    kid1=$(call POST "$VA/keys/payments-dek/create?api-version=7.5" "$kv" \
        '{"kty":"RSA","key_size":2048,"key_ops":["wrapKey","unwrapKey"],"tags":{"purpose":"dek"}}' | json 'd["key"]["kid"]')
    kid2=$(call POST "$VA/keys/payments-dek/create?api-version=7.5" "$kv" \
        '{"kty":"RSA","key_size":2048,"key_ops":["wrapKey","unwrapKey"],"tags":{"purpose":"dek"}}' | json 'd["key"]["kid"]')
    call PUT "$VA/keys/payments-dek/rotationpolicy?api-version=7.5" "$kv" \
        '{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P180D"},"action":{"type":"Rotate"}},{"trigger":{"timeBeforeExpiry":"P30D"},"action":{"type":"Notify"}}],"attributes":{"expiryTime":"P1Y"}}' >/dev/null
    call POST "$VA/keys/signing/create?api-version=7.5" "$kv" \
        '{"kty":"EC","crv":"P-384","key_ops":["sign","verify"]}' >/dev/null
    call POST "$VB/keys/legacy-kek/create?api-version=7.5" "$kv" \
        '{"kty":"RSA","key_size":3072,"key_ops":["encrypt","decrypt","wrapKey","unwrapKey"]}' >/dev/null
    # secrets: one with two versions, one with tags, one in the legacy vault
    call PUT "$VA/secrets/db-password?api-version=7.5" "$kv" '{"value":"Hand-Canary-v1-8e2a"}' >/dev/null
    call PUT "$VA/secrets/db-password?api-version=7.5" "$kv" '{"value":"Hand-Canary-v2-41c7","contentType":"text/plain"}' >/dev/null
    call PUT "$VA/secrets/psp-api-token?api-version=7.5" "$kv" \
        '{"value":"Hand-Canary-token-93f0","contentType":"application/json","tags":{"rotated-by":"ops","expires":"2027-01"}}' >/dev/null
    call PUT "$VB/secrets/smtp-password?api-version=7.5" "$kv" '{"value":"Hand-Canary-smtp-7d1b"}' >/dev/null
    # a certificate (schema v1 has none: a counted comment)
    openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=payments.example -days 365 \
        -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null
    call POST "$VA/certificates/payments-tls/import?api-version=7.5" "$kv" "$("$py" -c '
import json,sys
print(json.dumps({"value": open(sys.argv[1]).read() + open(sys.argv[2]).read(),
                  "policy": {"secret_props": {"contentType": "application/x-pem-file"}}}))' \
        "$work/tls.crt" "$work/tls.key")" >/dev/null

    # role assignments: an app on a key, an app on the vault
    ra() { # scope principal roleGuid type
        call PUT "$ARM$1/providers/Microsoft.Authorization/roleAssignments/$(cat /proc/sys/kernel/random/uuid)?api-version=2022-04-01" "$arm" \
            "{\"properties\":{\"roleDefinitionId\":\"$ROLE/$3\",\"principalId\":\"$2\",\"principalType\":\"$4\"}}" >/dev/null
    }
    V1ID="/subscriptions/$SUB/resourceGroups/$RG/providers/Microsoft.KeyVault/vaults/$V1"
    ra "$V1ID/keys/payments-dek" "$pay_sp" e147488a-f6f5-4113-8e2d-b22465e65bf6 ServicePrincipal
    ra "$V1ID" "$ops_sp" b86a8fe4-44ce-4948-aee5-eccb2c155cd7 ServicePrincipal
    # and one above the vaults, on the resource group (Key Vault Reader): schema v1 has no such scope
    ra "/subscriptions/$SUB/resourceGroups/$RG" "$ops_sp" 21090545-7ca7-4776-b22c-e363652d74d2 ServicePrincipal

    # profiles: an old one applied first (Inactive now), the current one Used
    mkprof() { # name kid
        call PUT "$PROF/encryptionProfiles/$1?api-version=2026-01-01" "$prof" \
            "{\"tenantId\":\"$AZURE_TENANT_ID\",\"clientId\":\"$pay_app\",\"clientSecret\":\"$pay_secret\",\"keyId\":\"$2\"}" >/dev/null
        call POST "$PROF/encryptionProfiles/$1/apply?api-version=2026-01-01" "$prof" >/dev/null
        azsim_advance 120
    }
    mkprof payments-2026-05 "$kid1"
    mkprof payments-2026-11 "$kid2"
    st=$(call GET "$PROF/encryptionProfiles/payments-2026-05?api-version=2026-01-01" "$prof" | json 'd["status"]')
    check "seeded: the old profile is Inactive ($st)" "$([[ $st == Inactive ]]; echo $?)"
    st=$(call GET "$PROF/encryptionProfiles/payments-2026-11?api-version=2026-01-01" "$prof" | json 'd["status"]')
    check "seeded: the current profile is Used ($st)" "$([[ $st == Used ]]; echo $?)"

    export_check "hand-made estate" ex-hand
    E=$work/ex-hand
    check "both vaults, access policy of the app, its secrets' permissions" \
        "$(grep -q "name: $V1" "$E/vaults.yaml" && grep -q "name: $V2" "$E/vaults.yaml" &&
            grep -q 'secrets: \[get, list\]' "$E/vaults.yaml"; echo $?)"
    check "the person's access policy is a comment" \
        "$(grep -q "^  # access policy of principal $USER" "$E/vaults.yaml" &&
            grep -q "access policy of Application 'azsim-bootstrap'" "$E/vaults.yaml"; echo $?)"
    check "three apps, two role assignments (key scope and vault scope)" \
        "$(grep -c '^  - name: ' "$E/identity.yaml" | grep -qx 3 &&
            grep -q '    key: payments-dek' "$E/identity.yaml" &&
            grep -q 'role: Key Vault Secrets Officer' "$E/identity.yaml"; echo $?)"
    check "the role assignment on the resource group is a comment" \
        "$(grep -q "^  # role 'Key Vault Reader' of app 'ops-automation' at scope /subscriptions/$SUB/resourceGroups/$RG:" "$E/identity.yaml"; echo $?)"
    check "hand-made client secrets are comments, never credentials" \
        "$(grep -q "client secret 'prod 2026'" "$E/identity.yaml" &&
            ! grep -q 'credentials:' "$E/identity.yaml"; echo $?)"
    check "rotation policy with every/expiresAfter/notifyBefore, none on the EC key" \
        "$(grep -q 'every: 180d' "$E/encryption.yaml" && grep -q 'expiresAfter: 365d' "$E/encryption.yaml" &&
            grep -q 'curve: P-384' "$E/encryption.yaml" && [[ $(grep -c 'rotation:' "$E/encryption.yaml") == 1 ]]; echo $?)"
    check "every secret external, certificate a comment" \
        "$([[ $(grep -c '^    external: true' "$E/encryption.yaml") == 3 ]] &&
            grep -q "certificate 'payments-tls'" "$E/encryption.yaml"; echo $?)"
    check "summary counts what schema v1 cannot express" \
        "$(grep -q 'not expressible in schema v1' "$work/ex-hand.err" &&
            ! grep -q '; 0 not expressible' "$work/ex-hand.err"; echo $?)"
    # with --profiles: profiles signed in with a hand-made client secret cannot be declared
    # (schema v1 names credentials by kvreconcile's generations): they are comments, counted,
    # and the plan shows only their gated retirement, never anything else
    set +e
    "$kvr" export -o "$work/ex-hand-prof" --profiles >"$work/ex-hand-prof.out" 2>"$work/ex-hand-prof.err"
    rc=$?
    set -e
    check "--profiles: export exits 0" "$([[ $rc == 0 ]]; echo $?)"
    check "--profiles: both profiles are counted comments" \
        "$(grep -q "profile 'payments-2026-05' (Inactive)" "$work/ex-hand-prof/encryption.yaml" &&
            grep -q "profile 'payments-2026-11' (Used)" "$work/ex-hand-prof/encryption.yaml"; echo $?)"
    # filters: one vault (its apps only), one resource group, a vault that is not there
    export_check "--vault $V1" ex-one --vault "$V1"
    check "--vault: that vault only, and only the apps it names" \
        "$([[ $(grep -c '^  - name: ' "$work/ex-one/vaults.yaml") == 1 ]] &&
            [[ $(grep -c '^  - name: ' "$work/ex-one/identity.yaml") == 2 ]]; echo $?)"
    "$kvr" export -o "$work/ex-rg" -q -g "$RG" >/dev/null
    check "-g $RG: both vaults" "$(diff -q "$E/encryption.yaml" "$work/ex-rg/encryption.yaml" >/dev/null; echo $?)"
    set +e
    "$kvr" export -o "$work/ex-none" --vault kv-not-there >/dev/null 2>"$work/ex-none.err"
    rc=$?
    set -e
    check "--vault that does not exist: exit 1, named" \
        "$([[ $rc == 1 ]] && grep -q "vault 'kv-not-there' is not in the subscription" "$work/ex-none.err"; echo $?)"
    secret_free Hand-Canary-v1-8e2a Hand-Canary-v2-41c7 Hand-Canary-token-93f0 Hand-Canary-smtp-7d1b \
        "$pay_secret" "$rep_secret" "$ops_secret"
    # change one thing: the RBAC vault's tag; the plan shows exactly that
    sed -i 's/^      tier: "1"$/      tier: "2"/' "$E/vaults.yaml"
    set +e
    "$kvr" plan -f "$E" --detailed-exitcode >"$work/changed.plan" 2>&1
    rc=$?
    set -e
    check "one changed tag: plan exits 2, one change" \
        "$([[ $rc == 2 ]] && grep -q 'Plan: 0 to create, 1 to change, 0 to retire' "$work/changed.plan"; echo $?)"
    ;;
*)
    echo "unknown mode '$mode'"
    exit 2
    ;;
esac
[[ -z ${E2E_KEEP:-} ]] || cp -r "$work" "$E2E_KEEP"
e2e_finish

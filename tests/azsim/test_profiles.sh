#!/usr/bin/env bash
# The consuming service in azsim (profiles.localhost): profiles are created only when their app
# can sign in and use the key; applying re-wraps every data key for real; a Used profile cannot
# be deleted; and deleting the old key while a new profile is Applying loses data keys, which the
# simulator counts (this test expects that count to rise; every other test expects zero).
# usage: test_profiles.sh AZSIM_BINARY
set -euo pipefail
. "$(dirname "$0")/port.sh" # azsim_port: the port survives the restart below
azsim=$(realpath "$1")
data=$(mktemp -d)
pid=
passed=0 failed=0
cleanup() {
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    rm -rf "$data"
}
trap cleanup EXIT
"$azsim" --data "$data" --port "$(azsim_port)" --rbac-delay 5 --data-keys 40 --rewrap-rate 10 >"$data/out" 2>"$data/err" &
pid=$!
for _ in $(seq 1 100); do grep -q '^azsim ready' "$data/out" 2>/dev/null && break; sleep 0.1; done
grep -q '^azsim ready' "$data/out" || { cat "$data/err"; echo "0 passed, 1 failed"; exit 1; }
set -a; . "$data/azsim.env"; set +a
P=$AZSIM_PORT
json() { /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
check() { # name, condition-result (0 ok)
    if [ "$2" = 0 ]; then echo "ok   $1"; passed=$((passed + 1)); else echo "FAIL $1"; failed=$((failed + 1)); fi
}
token() { # client_id secret resource
    curl -sS --cacert "$AZSIM_CA" "https://login.localhost:$P/$AZURE_TENANT_ID/oauth2/v2.0/token" \
        --data-urlencode grant_type=client_credentials --data-urlencode "client_id=$1" \
        --data-urlencode "client_secret=$2" --data-urlencode "scope=$3/.default" | json 'd["access_token"]'
}
req() { # method url token [body] -> prints "STATUS BODY"
    local out status
    out=$(mktemp)
    status=$(curl -sS --cacert "$AZSIM_CA" -o "$out" -w '%{http_code}' -X "$1" "$2" \
        -H "Authorization: Bearer $3" -H 'Content-Type: application/json' ${4:+--data "$4"})
    echo "$status $(cat "$out")"
    rm -f "$out"
}
status_of() { echo "${1%% *}"; }
body_of() { echo "${1#* }"; }
advance() { curl -sS --cacert "$AZSIM_CA" -X POST "$AZSIM_URL/clock/advance" -d "{\"seconds\":$1}" >/dev/null; }
consumer() { curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/consumer"; }

ARM="https://management.localhost:$P"
GRAPH="https://graph.localhost:$P"
PROF="https://profiles.localhost:$P"
S=$AZURE_SUBSCRIPTION_ID
arm=$(token "$AZURE_CLIENT_ID" "$AZURE_CLIENT_SECRET" "$ARM")
graph=$(token "$AZURE_CLIENT_ID" "$AZURE_CLIENT_SECRET" "$GRAPH")
kv=$(token "$AZURE_CLIENT_ID" "$AZURE_CLIENT_SECRET" "https://vault.localhost:$P")
prof=$(token "$AZURE_CLIENT_ID" "$AZURE_CLIENT_SECRET" "$PROF")

# a vault with two RSA keys, an app with a secret and a service principal
req PUT "$ARM/subscriptions/$S/resourceGroups/rg1?api-version=2021-04-01" "$arm" '{"location":"westeurope"}' >/dev/null
r=$(req PUT "$ARM/subscriptions/$S/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/kv-prof?api-version=2024-11-01" "$arm" \
    "{\"location\":\"westeurope\",\"properties\":{\"tenantId\":\"$AZURE_TENANT_ID\",\"sku\":{\"family\":\"A\",\"name\":\"standard\"},\"enableRbacAuthorization\":true,\"enablePurgeProtection\":true,\"softDeleteRetentionInDays\":7}}")
check "vault created" "$([[ $(status_of "$r") == 20? ]]; echo $?)"
VAULT="https://kv-prof.vault.localhost:$P"
k1=$(body_of "$(req POST "$VAULT/keys/kek1/create?api-version=7.5" "$kv" '{"kty":"RSA","key_size":2048,"key_ops":["wrapKey","unwrapKey"]}')" | json 'd["key"]["kid"]')
k2=$(body_of "$(req POST "$VAULT/keys/kek2/create?api-version=7.5" "$kv" '{"kty":"RSA","key_size":2048,"key_ops":["wrapKey","unwrapKey"]}')" | json 'd["key"]["kid"]')
app=$(body_of "$(req POST "$GRAPH/v1.0/applications" "$graph" '{"displayName":"svc","signInAudience":"AzureADMyOrg"}')")
app_oid=$(echo "$app" | json 'd["id"]'); app_id=$(echo "$app" | json 'd["appId"]')
secret=$(body_of "$(req POST "$GRAPH/v1.0/applications/$app_oid/addPassword" "$graph" '{"passwordCredential":{"displayName":"kvr:1"}}')" | json 'd["secretText"]')
sp=$(body_of "$(req POST "$GRAPH/v1.0/servicePrincipals" "$graph" "{\"appId\":\"$app_id\"}")" | json 'd["id"]')
profile() { echo "{\"tenantId\":\"$AZURE_TENANT_ID\",\"clientId\":\"$app_id\",\"clientSecret\":\"$secret\",\"keyId\":\"$1\",\"metadata\":{\"kvr-credential\":\"1\"}}"; }

r=$(req PUT "$PROF/encryptionProfiles/p1?api-version=2026-01-01" "$prof" "$(profile "$k1")")
check "no role yet: profile refused (400 KeyNotAccessible)" "$([[ $(status_of "$r") == 400 && $r == *KeyNotAccessible* ]]; echo $?)"
r=$(req GET "$PROF/encryptionProfiles?api-version=2026-01-01" "")
check "no token: 401" "$([[ $(status_of "$r") == 401 ]]; echo $?)"
r=$(req GET "$PROF/encryptionProfiles" "$prof")
check "no api-version: 400 MissingApiVersionParameter" "$([[ $r == 400*MissingApiVersionParameter* ]]; echo $?)"

role='{"properties":{"roleDefinitionId":"/providers/Microsoft.Authorization/roleDefinitions/e147488a-f6f5-4113-8e2d-b22465e65bf6","principalId":"'$sp'","principalType":"ServicePrincipal"}}'
req PUT "$ARM/subscriptions/$S/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/kv-prof/providers/Microsoft.Authorization/roleAssignments/11111111-1111-4111-8111-111111111111?api-version=2022-04-01" "$arm" "$role" >/dev/null
r=$(req PUT "$PROF/encryptionProfiles/p1?api-version=2026-01-01" "$prof" "$(profile "$k1")")
check "role not yet effective (rbac delay): still refused" "$([[ $(status_of "$r") == 400 ]]; echo $?)"
advance 10
r=$(req PUT "$PROF/encryptionProfiles/p1?api-version=2026-01-01" "$prof" "$(profile "$k1")")
check "after propagation: 201 Created" "$([[ $(status_of "$r") == 201 && $(body_of "$r" | json 'd["status"]') == Created ]]; echo $?)"
r=$(req PUT "$PROF/encryptionProfiles/p1?api-version=2026-01-01" "$prof" "$(profile "$k1")")
check "idempotent create: 200" "$([[ $(status_of "$r") == 200 ]]; echo $?)"
r=$(req PUT "$PROF/encryptionProfiles/p1?api-version=2026-01-01" "$prof" "$(profile "$k2")")
check "re-pointing a profile: 409 ProfileImmutable" "$([[ $r == 409*ProfileImmutable* ]]; echo $?)"

r=$(req POST "$PROF/encryptionProfiles/p1/apply?api-version=2026-01-01" "$prof")
check "apply: 202 Applying" "$([[ $(status_of "$r") == 202 && $(body_of "$r" | json 'd["status"]') == Applying ]]; echo $?)"
advance 10
r=$(req GET "$PROF/encryptionProfiles/p1?api-version=2026-01-01" "$prof")
check "first profile Used once its 40 data keys are wrapped" "$([[ $(body_of "$r" | json 'd["status"]') == Used ]]; echo $?)"
c=$(consumer)
check "consumer holds 40 data keys, none lost" "$([[ $(echo "$c" | json 'd["dataKeys"]') == 40 && $(echo "$c" | json 'd["unrecoverable"]') == 0 ]]; echo $?)"
r=$(req DELETE "$PROF/encryptionProfiles/p1?api-version=2026-01-01" "$prof")
check "deleting the Used profile: 409 ProfileInUse" "$([[ $r == 409*ProfileInUse* ]]; echo $?)"

# rotate to kek2: Applying re-wraps; the old key must stay usable the whole time
req PUT "$PROF/encryptionProfiles/p2?api-version=2026-01-01" "$prof" "$(profile "$k2")" >/dev/null
req POST "$PROF/encryptionProfiles/p2/apply?api-version=2026-01-01" "$prof" >/dev/null
advance 2
r=$(req GET "$PROF/encryptionProfiles/p2?api-version=2026-01-01" "$prof")
check "p2 Applying, partly re-wrapped" "$([[ $(body_of "$r" | json 'd["status"]') == Applying && $(body_of "$r" | json 'd["progress"]["rewrapped"]') -gt 0 ]]; echo $?)"
r=$(req GET "$PROF/encryptionProfiles/p1?api-version=2026-01-01" "$prof")
check "p1 still Used while p2 applies" "$([[ $(body_of "$r" | json 'd["status"]') == Used ]]; echo $?)"
advance 10
r=$(req GET "$PROF/encryptionProfiles?api-version=2026-01-01" "$prof")
check "after re-wrap: p2 Used, p1 Inactive" "$([[ $(body_of "$r" | json '[p["status"] for p in d["value"]]') == "['Inactive', 'Used']" ]]; echo $?)"
check "no data key lost by a complete rotation" "$([[ $(consumer | json 'd["unrecoverable"]') == 0 ]]; echo $?)"

# now the harm: apply p3 (back on kek1... with a new key kek3) and delete kek2 mid-apply
k3=$(body_of "$(req POST "$VAULT/keys/kek3/create?api-version=7.5" "$kv" '{"kty":"RSA","key_size":2048,"key_ops":["wrapKey","unwrapKey"]}')" | json 'd["key"]["kid"]')
req PUT "$PROF/encryptionProfiles/p3?api-version=2026-01-01" "$prof" "$(profile "$k3")" >/dev/null
req POST "$PROF/encryptionProfiles/p3/apply?api-version=2026-01-01" "$prof" >/dev/null
advance 1
r=$(req DELETE "$VAULT/keys/kek2?api-version=7.5" "$kv")
check "the old key can be deleted (Key Vault does not know about the service)" "$([[ $(status_of "$r") == 200 ]]; echo $?)"
advance 5
c=$(consumer)
check "deleting the old key mid-apply loses data keys: unrecoverable > 0" "$([[ $(echo "$c" | json 'd["unrecoverable"]') -gt 0 ]]; echo $?)"
r=$(req GET "$PROF/encryptionProfiles/p3?api-version=2026-01-01" "$prof")
check "the profile being applied goes Failed" "$([[ $(body_of "$r" | json 'd["status"]') == Failed ]]; echo $?)"

# restart: the service's state survives
kill -TERM "$pid"; wait "$pid" || true; pid=
"$azsim" --data "$data" --port "$P" >"$data/out2" 2>"$data/err2" &
pid=$!
for _ in $(seq 1 100); do grep -q '^azsim ready' "$data/out2" 2>/dev/null && break; sleep 0.1; done
prof=$(token "$AZURE_CLIENT_ID" "$AZURE_CLIENT_SECRET" "$PROF")
r=$(req GET "$PROF/encryptionProfiles?api-version=2026-01-01" "$prof")
check "profiles and the loss count survive a restart" "$([[ $(body_of "$r" | json 'len(d["value"])') == 3 && $(consumer | json 'd["unrecoverable"]') -gt 0 ]]; echo $?)"

# a key deleted while nothing applies: its data keys are lost at once (the service checks them
# whenever the state has changed, not only while a profile applies)
kv=$(token "$AZURE_CLIENT_ID" "$AZURE_CLIENT_SECRET" "https://vault.localhost:$P")
c=$(consumer)
lost=$(echo "$c" | json 'd["unrecoverable"]')
live=$(echo "$c" | json 'd["recoverable"]')
r=$(req DELETE "$VAULT/keys/kek3?api-version=7.5" "$kv")
c=$(consumer)
check "a key deleted with no profile applying: its $live data keys are lost at once" \
    "$([[ $(status_of "$r") == 200 && $live -gt 0 && $(echo "$c" | json 'd["unrecoverable"]') -eq $((lost + live)) ]]; echo $?)"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

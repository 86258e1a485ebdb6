#!/usr/bin/env bash
# kvreconcile plan against azsim, end to end. The rotate-key example's before/ state is built in
# azsim through the real REST APIs (as an operator or an earlier apply would have), with the
# markers kvreconcile writes (generation tag, credential display name, stored-copy tag, profile
# metadata). Then:
#   - plan of before/ is empty, with --detailed-exitcode 0 (converged: nothing to do)
#   - plan of after/ shows the steps the example README promises, with exit 2
#   - the JSON plan validates against schema/plan.schema.json
#   - no secret value appears in any output
# usage: plan_rotate_key.sh KVRECONCILE AZSIM
set -euo pipefail
kvr=$(realpath "$1")
azsim=$(realpath "$2")
root=$(cd "$(dirname "$0")/../.." && pwd)
data=$(mktemp -d)
pid=
passed=0 failed=0
cleanup() {
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    rm -rf "$data"
}
trap cleanup EXIT
check() { if [ "$2" = 0 ]; then echo "ok   $1"; passed=$((passed + 1)); else echo "FAIL $1"; failed=$((failed + 1)); fi; }
SUB=3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43
"$azsim" --data "$data/sim" --port 0 --subscription "$SUB" --rbac-delay 0 --data-keys 20 \
    >"$data/out" 2>"$data/err" &
pid=$!
for _ in $(seq 1 100); do grep -q '^azsim ready' "$data/out" 2>/dev/null && break; sleep 0.1; done
grep -q '^azsim ready' "$data/out" || { cat "$data/err"; echo "0 passed, 1 failed"; exit 1; }
set -a; . "$data/sim/azsim.env"; set +a
P=$AZSIM_PORT
json() { /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
token() {
    curl -sS --cacert "$AZSIM_CA" "https://login.localhost:$P/$AZURE_TENANT_ID/oauth2/v2.0/token" \
        --data-urlencode grant_type=client_credentials --data-urlencode "client_id=$1" \
        --data-urlencode "client_secret=$2" --data-urlencode "scope=$3/.default" | json 'd["access_token"]'
}
call() { # method url token [body] -> body; fails on a non-2xx status
    curl -sS --fail-with-body --cacert "$AZSIM_CA" -X "$1" "$2" -H "Authorization: Bearer $3" \
        -H 'Content-Type: application/json' ${4:+--data "$4"}
}
ARM="https://management.localhost:$P"; GRAPH="https://graph.localhost:$P"; PROF="https://profiles.localhost:$P"
V=kv-contoso-bkp-weu; RG=rg-contoso-backup-weu; VAULT="https://$V.vault.localhost:$P"
arm=$(token "$AZURE_CLIENT_ID" "$AZURE_CLIENT_SECRET" "$ARM")
graph=$(token "$AZURE_CLIENT_ID" "$AZURE_CLIENT_SECRET" "$GRAPH")
kv=$(token "$AZURE_CLIENT_ID" "$AZURE_CLIENT_SECRET" "https://vault.localhost:$P")
prof=$(token "$AZURE_CLIENT_ID" "$AZURE_CLIENT_SECRET" "$PROF")

# ---- the before/ state, as an apply would have left it ----
call PUT "$ARM/subscriptions/$SUB/resourceGroups/$RG?api-version=2021-04-01" "$arm" '{"location":"westeurope"}' >/dev/null
call PUT "$ARM/subscriptions/$SUB/resourceGroups/$RG/providers/Microsoft.KeyVault/vaults/$V?api-version=2024-11-01" "$arm" \
  "{\"location\":\"westeurope\",\"tags\":{\"env\":\"prod\",\"owner\":\"platform-security\",\"costCenter\":\"4711\"},
    \"properties\":{\"tenantId\":\"$AZURE_TENANT_ID\",\"sku\":{\"family\":\"A\",\"name\":\"standard\"},
    \"enableRbacAuthorization\":true,\"enableSoftDelete\":true,\"softDeleteRetentionInDays\":90,\"enablePurgeProtection\":true,
    \"networkAcls\":{\"defaultAction\":\"Deny\",\"bypass\":\"AzureServices\",\"ipRules\":[{\"value\":\"203.0.113.0/24\"},{\"value\":\"198.51.100.17\"}]}}}" >/dev/null
kid=$(call POST "$VAULT/keys/backup-dek/create?api-version=7.5" "$kv" \
  '{"kty":"RSA","key_size":3072,"key_ops":["wrapKey","unwrapKey"],"tags":{"purpose":"backup-data-encryption","kvr-generation":"2026-05"}}' | json 'd["key"]["kid"]')
call PUT "$VAULT/keys/backup-dek/rotationpolicy?api-version=7.5" "$kv" \
  '{"lifetimeActions":[{"trigger":{"timeBeforeExpiry":"P30D"},"action":{"type":"Notify"}}],"attributes":{"expiryTime":"P730D"}}' >/dev/null
app=$(call POST "$GRAPH/v1.0/applications" "$graph" '{"displayName":"Contoso backup encryption (aos-backup)","signInAudience":"AzureADMyOrg"}')
app_oid=$(echo "$app" | json 'd["id"]'); app_id=$(echo "$app" | json 'd["appId"]')
pw=$(call POST "$GRAPH/v1.0/applications/$app_oid/addPassword" "$graph" '{"passwordCredential":{"displayName":"kvr:2026-05"}}')
secret=$(echo "$pw" | json 'd["secretText"]'); key_id=$(echo "$pw" | json 'd["keyId"]')
sp=$(call POST "$GRAPH/v1.0/servicePrincipals" "$graph" "{\"appId\":\"$app_id\"}" | json 'd["id"]')
call PUT "$VAULT/secrets/aos-backup-cred-2026-05?api-version=7.5" "$kv" \
  "{\"value\":\"$secret\",\"contentType\":\"text/plain\",\"tags\":{\"kvr-credential-key-id\":\"$key_id\"}}" >/dev/null
call PUT "$VAULT/secrets/aos-backup-client-secret?api-version=7.5" "$kv" "{\"value\":\"$secret\",\"contentType\":\"text/plain\"}" >/dev/null
call PUT "$VAULT/secrets/backup-export-passphrase?api-version=7.5" "$kv" '{"value":"Passphrase-Canary-5d1e9f","contentType":"text/plain"}' >/dev/null
call PUT "$ARM/subscriptions/$SUB/resourceGroups/$RG/providers/Microsoft.KeyVault/vaults/$V/keys/backup-dek/providers/Microsoft.Authorization/roleAssignments/0f2c4e6a-8b1d-4f3e-9a5c-7d6e8f9a0b1c?api-version=2022-04-01" "$arm" \
  "{\"properties\":{\"roleDefinitionId\":\"/subscriptions/$SUB/providers/Microsoft.Authorization/roleDefinitions/e147488a-f6f5-4113-8e2d-b22465e65bf6\",\"principalId\":\"$sp\",\"principalType\":\"ServicePrincipal\"}}" >/dev/null
call PUT "$PROF/encryptionProfiles/contoso-backup-2026-05?api-version=2026-01-01" "$prof" \
  "{\"tenantId\":\"$AZURE_TENANT_ID\",\"clientId\":\"$app_id\",\"clientSecret\":\"$secret\",\"keyId\":\"$kid\",\"metadata\":{\"kvr-credential\":\"2026-05\",\"kvr-managed\":\"true\"}}" >/dev/null
call POST "$PROF/encryptionProfiles/contoso-backup-2026-05/apply?api-version=2026-01-01" "$prof" >/dev/null
curl -sS --cacert "$AZSIM_CA" -X POST "$AZSIM_URL/clock/advance" -d '{"seconds":60}' >/dev/null
status=$(call GET "$PROF/encryptionProfiles/contoso-backup-2026-05?api-version=2026-01-01" "$prof" | json 'd["status"]')
check "seeded: the before/ profile is Used" "$([[ $status == Used ]]; echo $?)"

# ---- plan ----
set +e
"$kvr" plan -f "$root/examples/rotate-key/before" --detailed-exitcode >"$data/before.txt" 2>"$data/before.err"
rc=$?
set -e
check "plan of before/: exit 0 with --detailed-exitcode (converged)" "$([[ $rc == 0 ]]; echo $?)"
check "plan of before/: says there is nothing to do" "$(grep -q '^No changes' "$data/before.txt"; echo $?)"
[ $rc = 0 ] || { cat "$data/before.txt" "$data/before.err"; }

set +e
"$kvr" plan -f "$root/examples/rotate-key/after" --detailed-exitcode >"$data/after.txt" 2>"$data/after.err"
rc=$?
set -e
check "plan of after/: exit 2 (changes pending)" "$([[ $rc == 2 ]]; echo $?)"
expect=(
  "  1 ~ key 'backup-dek': create a new version for generation '2026-11'"
  "  2 + profile 'contoso-backup-2026-11': create with key 'backup-dek' and app 'aos-backup'"
  "  3 ~ profile 'contoso-backup-2026-11': apply: the service re-wraps every data key with it (Applying, then Used)"
  "  4 ⏸ profile 'contoso-backup-2026-05': delete (no longer declared)"
  "  5 ⏸ key 'backup-dek' version "
  "  6 ⏸ key 'backup-dek' version "
  "Plan: 1 to create, 2 to change, 0 to retire, 3 waiting."
)
for line in "${expect[@]}"; do
    check "plan of after/ has: ${line:0:70}" "$(grep -qF -- "$line" "$data/after.txt"; echo $?)"
done
[ $rc = 2 ] || cat "$data/after.txt" "$data/after.err"

"$kvr" plan -f "$root/examples/rotate-key/after" -o json >"$data/plan.json"
/usr/bin/python3 - "$root/schema/plan.schema.json" "$data/plan.json" <<'PY'
import json, sys, jsonschema
jsonschema.Draft202012Validator(json.load(open(sys.argv[1]))).validate(json.load(open(sys.argv[2])))
PY
check "the JSON plan validates against plan.schema.json" "$?"
"$kvr" plan -f "$root/examples/rotate-key/after" -o markdown >"$data/plan.md"
check "markdown: summary first, details folded" "$(head -3 "$data/plan.md" | grep -q '1 to create, 2 to change' && grep -q '<details>' "$data/plan.md"; echo $?)"

leaks=$(grep -lF -e "$secret" -e "Passphrase-Canary-5d1e9f" "$data"/*.txt "$data"/*.err "$data"/*.json "$data"/*.md || true)
check "no secret value in any output" "$([[ -z $leaks ]]; echo $?)"
stats=$(curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/stats")
before_total=$(echo "$stats" | json 'd["total"]')
"$kvr" plan -f "$root/examples/rotate-key/after" >/dev/null
after=$(curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/stats")
BEFORE="$stats" AFTER="$after" /usr/bin/python3 -c '
import json, os
a, b = json.loads(os.environ["AFTER"]), json.loads(os.environ["BEFORE"])
d = {k: a["requests"][k] - b["requests"].get(k, 0) for k in sorted(a["requests"])}
d = {k: v for k, v in d.items() if v and not k.startswith("admin")}
print("requests made by one plan of after/: %d (%s)" % (sum(d.values()), ", ".join("%s %d" % kv for kv in d.items())))'
consumer=$(curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/consumer")
check "no data key lost" "$([[ $(echo "$consumer" | json 'd["unrecoverable"]') == 0 ]]; echo $?)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

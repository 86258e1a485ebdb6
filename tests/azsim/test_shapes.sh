#!/usr/bin/env bash
# The answers azsim gives to the operations kvreconcile uses carry the fields Azure's own answers
# carry: for each operation, the field names of the response example in Azure/azure-rest-api-specs
# (path named next to each check) must be present in azsim's answer, with the same JSON types.
# Differences that remain on purpose are listed in README.md ("Answers compared with Azure's").
# Usage: test_shapes.sh PATH/TO/azsim. Needs bash, curl and python3.
set -euo pipefail

AZSIM_BIN=${1:?usage: test_shapes.sh PATH/TO/azsim}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

. "$(dirname "$0")/testlib.sh"
azsim_test_setup azsim-shapes

azsim_test_start --rbac-delay 0
MT=$(azsim_test_token "$KVR_ARM_ENDPOINT")
VT=$(azsim_test_token "https://vault.localhost:$AZSIM_PORT")
GT=$(azsim_test_token "$KVR_GRAPH_ENDPOINT")
SUB="$KVR_ARM_ENDPOINT/subscriptions/$AZURE_SUBSCRIPTION_ID"
GRAPH=$KVR_GRAPH_ENDPOINT/v1.0

# fields NAME SPEC PATHS...: every dotted PATH ("a.b", "a.b[]" for an array, "a.b#" for a number,
# "a.b?" for a boolean, "a.b{}" for an object) is in the last body
fields() {
    local name=$1 spec=$2
    shift 2
    local missing
    missing=$("$PY" - "$WORK/body" "$@" <<'EOF'
import json, sys
b = json.load(open(sys.argv[1]))
bad = []
for p in sys.argv[2:]:
    kind = p[-2:] if p.endswith(("[]", "{}")) else p[-1] if p[-1] in "#?" else ""
    path = p[: len(p) - len(kind)]
    v = b
    for k in path.split("."):
        if not isinstance(v, dict) or k not in v:
            bad.append(p); break
        v = v[k]
    else:
        want = {"[]": list, "{}": dict, "#": int, "?": bool, "": str}[kind]
        if not isinstance(v, want) or (want is int and isinstance(v, bool)):
            bad.append(p + " (" + type(v).__name__ + ")")
print(" ".join(bad))
EOF
)
    [ -z "$missing" ] && ok "$name: the fields of $spec" || fail "$name ($spec)" "missing or mistyped: $missing"
}
RM=specification/keyvault/resource-manager/Microsoft.KeyVault/KeyVault/examples/2026-02-01
AUTHZ=specification/authorization/resource-manager/Microsoft.Authorization/stable/2022-04-01/examples
KEYS=specification/keyvault/data-plane/Keys/stable
SECRETS=specification/keyvault/data-plane/Secrets/stable/2025-07-01/examples

req PUT "$SUB/resourcegroups/rg1?api-version=2025-04-01" '{"location":"westeurope"}' "$MT"
fields "resource group PUT" "resources CreateResourceGroup" id name type location properties.provisioningState
VAULT="$SUB/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/kvshape1"
req PUT "$VAULT?api-version=2026-02-01" \
    "{\"location\":\"westeurope\",\"properties\":{\"tenantId\":\"$AZURE_TENANT_ID\",\"sku\":{\"family\":\"A\",\"name\":\"standard\"},\"enableRbacAuthorization\":true}}" "$MT"
req GET "$VAULT?api-version=2026-02-01" "" "$MT"
fields "vault GET" "${RM%/*}/2026-05-15-preview/getVault.json" id name type location 'tags{}' \
    systemData.createdAt systemData.createdBy systemData.createdByType systemData.lastModifiedAt \
    systemData.lastModifiedBy systemData.lastModifiedByType properties.tenantId properties.sku.family \
    properties.sku.name 'properties.accessPolicies[]' 'properties.enabledForDeployment?' \
    'properties.enabledForDiskEncryption?' 'properties.enabledForTemplateDeployment?' \
    properties.provisioningState properties.publicNetworkAccess properties.vaultUri
req GET "$SUB/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults?api-version=2026-02-01" "" "$MT"
fields "vault list by resource group" "$RM/listVaultByResourceGroup.json" 'value[]'

RA="$VAULT/providers/Microsoft.Authorization/roleAssignments/3f2d1c0b-7a6e-4d5c-9b8a-1e2f3a4b5c6d?api-version=2022-04-01"
req POST "$GRAPH/applications" '{"displayName":"shape-app"}' "$GT"
fields "Graph application POST" "Graph v1.0 application resource" id appId displayName signInAudience \
    'passwordCredentials[]' 'keyCredentials[]' createdDateTime
APP_OID=$(j 'b["id"]')
APP_ID=$(j 'b["appId"]')
req POST "$GRAPH/applications/$APP_OID/addPassword" '{"passwordCredential":{"displayName":"p1"}}' "$GT"
fields "Graph addPassword" "Graph v1.0 passwordCredential resource" keyId displayName secretText hint \
    startDateTime endDateTime
req POST "$GRAPH/servicePrincipals" "{\"appId\":\"$APP_ID\"}" "$GT"
fields "Graph servicePrincipal POST" "Graph v1.0 servicePrincipal resource" id appId displayName
SP=$(j 'b["id"]')
req PUT "$RA" "{\"properties\":{\"roleDefinitionId\":\"/subscriptions/$AZURE_SUBSCRIPTION_ID/providers/Microsoft.Authorization/roleDefinitions/4633458b-17de-408a-b874-0445c86b69e6\",\"principalId\":\"$SP\",\"principalType\":\"ServicePrincipal\"}}" "$MT"
fields "role assignment PUT" "$AUTHZ/RoleAssignments_CreateForResource.json" id name type \
    properties.roleDefinitionId properties.principalId properties.principalType properties.scope
req GET "$VAULT/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&\$filter=atScope()" "" "$MT"
fields "role assignment list" "$AUTHZ/RoleAssignments_ListForScope.json" 'value[]'

KV="https://kvshape1.vault.localhost:$AZSIM_PORT"
req POST "$KV/keys/k1/create?api-version=2025-07-01" '{"kty":"RSA","key_size":2048,"tags":{"t":"1"}}' "$VT"
fields "key create" "$KEYS/2025-07-01/examples/CreateKey-example.json" key.kid key.kty 'key.key_ops[]' key.n key.e \
    'attributes.enabled?' 'attributes.created#' 'attributes.updated#' attributes.recoveryLevel 'tags{}'
req GET "$KV/keys/k1/rotationpolicy?api-version=2026-04-01" "" "$VT"
req PUT "$KV/keys/k1/rotationpolicy?api-version=2026-04-01" \
    '{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P90D"},"action":{"type":"Rotate"}}],"attributes":{"expiryTime":"P2Y"}}' "$VT"
req GET "$KV/keys/k1/rotationpolicy?api-version=2026-04-01" "" "$VT"
fields "key rotation policy GET" "$KEYS/2026-04-01/examples/GetKeyRotationPolicy-example.json" id \
    'lifetimeActions[]' attributes.expiryTime 'attributes.created#' 'attributes.updated#'
req PUT "$KV/secrets/s1?api-version=2025-07-01" '{"value":"v1"}' "$VT"
req PUT "$KV/secrets/s1?api-version=2025-07-01" '{"value":"v2"}' "$VT"
fields "secret set" "$SECRETS/SetSecret-example.json (but previousVersion)" value id 'attributes.enabled?' \
    'attributes.created#' 'attributes.updated#' attributes.recoveryLevel

req DELETE "$VAULT?api-version=2026-02-01" "" "$MT"
req GET "$SUB/providers/Microsoft.KeyVault/deletedVaults?api-version=2026-02-01" "" "$MT"
j 'b["value"][0]' >"$WORK/dv" && cp "$WORK/dv" "$WORK/body"
fields "deleted vault list entry" "$RM/listDeletedVaults.json" id name type properties.deletionDate \
    properties.location 'properties.purgeProtectionEnabled?' properties.scheduledPurgeDate \
    'properties.tags{}' properties.vaultId

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]

#!/usr/bin/env bash
# The Azure CLI (Debian's azure-cli package, unmodified) against azsim: registers azsim as a
# custom cloud in a private AZURE_CONFIG_DIR, signs in as the bootstrap service principal, then
# creates a resource group, an RBAC vault, keys (create, show, rotate, versions) and secrets; makes
# a second principal with az ad (app, service principal, password), gives it Key Vault Secrets
# User on the vault, signs in as it and checks that the data plane refuses it until the role
# propagates (--rbac-delay) and then lets it read a secret but not create a key. Every answer is
# checked.
#
# Name resolution: Python does not resolve *.localhost (glibc asks files, then DNS), so every az
# command runs in a private mount namespace (unshare) whose /etc/hosts is a bind mount of a file
# in the scratch directory naming azsim's hosts; the machine's /etc/hosts is never touched, and
# the namespace ends with the command. TLS is verified against azsim's CA (REQUESTS_CA_BUNDLE).
#
# Packaging gaps of Debian's azure-cli 2.45 (they fail the same against Azure, before any request):
#   - every `az keyvault key|secret` command: "No module named 'azure.keyvault.v7_0'" (the
#     track-1 Key Vault module the package does not ship; upstream Azure/azure-cli#30740);
#   - `az role assignment create|list`: "'RoleAssignmentsOperations' object has no attribute
#     'config'" (Debian's azure-mgmt-authorization is newer than this CLI expects).
# Those calls go through `az rest` instead, which still signs in and sends through the CLI.
#
# First the same endpoints with curl (AD FS discovery and token, subscriptions, resources, Graph
# filters), which run also where az is missing; then exits 77 (ctest: skipped) when az or a
# usable unshare is missing.
# usage: test_azcli.sh AZSIM
set -euo pipefail
. "$(dirname "$0")/../e2e/lib.sh"
azsim=$(realpath "$1")

e2e_init
azsim_start "$azsim" --rbac-delay 600
P=$AZSIM_PORT
ARM=$KVR_ARM_ENDPOINT
VAULT_RES="https://vault.localhost:$P"
KV=azclikv1
RG=rg-azcli
SUB=/subscriptions/$AZURE_SUBSCRIPTION_ID

# ---- on the wire, with curl (also when az is missing): what the CLI relies on ----
LOGIN="https://login.localhost:$P"
c() { # c METHOD URL [curl args...]: body in $work/c.out, status in $cs
    local m=$1 u=$2
    shift 2
    cs=$(curl -sS --cacert "$AZSIM_CA" -X "$m" -o "$work/c.out" -w '%{http_code}' "$@" "$u") || cs=000
}
cj() { json "$1" <"$work/c.out" 2>/dev/null || echo "<no JSON>"; }
c GET "$LOGIN/adfs/.well-known/openid-configuration"
got=$(cj 'd["issuer"], d["token_endpoint"], d["jwks_uri"], d["access_token_issuer"]')
check "AD FS discovery ($cs $got)" "$([[ $cs == 200 && $got == "('$LOGIN/adfs', '$LOGIN/adfs/oauth2/token/', '$LOGIN/adfs/discovery/keys', '$LOGIN/$AZURE_TENANT_ID/v2.0')" ]]; echo $?)"
c POST "$LOGIN/adfs/oauth2/token/" -d grant_type=client_credentials --data-urlencode "client_id=$AZURE_CLIENT_ID" \
    --data-urlencode "client_secret=$AZURE_CLIENT_SECRET" --data-urlencode "scope=$ARM//.default"
adfs_tok=$(cj 'd["access_token"]')
check "AD FS token endpoint issues a token ($cs)" "$([[ $cs == 200 && $adfs_tok == *.*.* ]]; echo $?)"
c POST "$LOGIN/adfs/oauth2/token/" -d grant_type=client_credentials --data-urlencode "client_id=$AZURE_CLIENT_ID" \
    --data-urlencode "client_secret=wrong" --data-urlencode "scope=$ARM/.default"
check "AD FS token endpoint refuses a wrong secret ($cs $(cj 'd["error"]'))" \
    "$([[ $cs == 401 && $(cj 'd["error"]') == invalid_client ]]; echo $?)"
c GET "$LOGIN/adfs/discovery/keys"
check "AD FS keys ($cs)" "$([[ $cs == 200 && $(cj 'd["keys"][0]["kty"]') == RSA ]]; echo $?)"
auth=(-H "Authorization: Bearer $adfs_tok")
c GET "$ARM/subscriptions?api-version=2022-12-01" "${auth[@]}"
got=$(cj '[(s["subscriptionId"], s["tenantId"], s["state"]) for s in d["value"]]')
check "Subscriptions_List with the AD FS token ($cs $got)" \
    "$([[ $cs == 200 && $got == "[('$AZURE_SUBSCRIPTION_ID', '$AZURE_TENANT_ID', 'Enabled')]" ]]; echo $?)"
c GET "$ARM$SUB?api-version=2022-12-01" "${auth[@]}"
check "Subscriptions_Get ($cs)" "$([[ $cs == 200 && $(cj 'd["id"]') == "$SUB" ]]; echo $?)"
c GET "$ARM/subscriptions/00000000-0000-0000-0000-000000000001?api-version=2022-12-01" "${auth[@]}"
check "Subscriptions_Get of another subscription: 404 ($cs $(cj 'd["error"]["code"]'))" \
    "$([[ $cs == 404 && $(cj 'd["error"]["code"]') == SubscriptionNotFound ]]; echo $?)"
c GET "$ARM/subscriptions?api-version=2017-01-01" "${auth[@]}"
check "Subscriptions_List with an unknown api-version: 400 ($cs $(cj 'd["error"]["code"]'))" \
    "$([[ $cs == 400 && $(cj 'd["error"]["code"]') == InvalidApiVersionParameter ]]; echo $?)"
c GET "$ARM$SUB/resources?api-version=2021-04-01&\$filter=tagName%20eq%20%27x%27" "${auth[@]}"
check "Resources_List with a filter azsim lacks: 400, not an unfiltered list ($cs)" "$([[ $cs == 400 ]]; echo $?)"
c GET "$ARM$SUB/resources?api-version=2021-04-01&\$filter=resourceType%20eq%20%27Microsoft.Web%2Fsites%27" "${auth[@]}"
check "Resources_List of a type azsim has none of: empty ($cs $(cj 'd["value"]'))" \
    "$([[ $cs == 200 && $(cj 'd["value"]') == '[]' ]]; echo $?)"
gtok=$(azsim_token "$KVR_GRAPH_ENDPOINT")
c GET "$KVR_GRAPH_ENDPOINT/v1.0/servicePrincipals?\$filter=servicePrincipalNames%2Fany(c%3Ac%20eq%20%27$AZURE_CLIENT_ID%27)" \
    -H "Authorization: Bearer $gtok"
check "Graph servicePrincipalNames/any filter ($cs)" \
    "$([[ $cs == 200 && $(cj '[s["appId"] for s in d["value"]]') == "['$AZURE_CLIENT_ID']" ]]; echo $?)"
c GET "$KVR_GRAPH_ENDPOINT/v1.0/applications?\$filter=startswith(displayName%2C%27AZSIM-%27)" \
    -H "Authorization: Bearer $gtok"
check "Graph startswith(displayName) filter, case-insensitive ($cs)" \
    "$([[ $cs == 200 && $(cj '[a["displayName"] for a in d["value"]]') == "['azsim-bootstrap']" ]]; echo $?)"
c GET "$KVR_GRAPH_ENDPOINT/v1.0/applications?\$filter=servicePrincipalNames%2Fany(c%3Ac%20eq%20%27x%27)" \
    -H "Authorization: Bearer $gtok"
check "Graph: servicePrincipalNames is no filter on applications ($cs)" "$([[ $cs == 400 ]]; echo $?)"

if ! command -v az >/dev/null; then
    echo "skip: no az (apt-get install azure-cli); the checks above ran"
    [ "$failed" -eq 0 ] || e2e_finish
    exit 77
fi
ns=(unshare -m)
[ "$(id -u)" = 0 ] || ns=(unshare -rm)
if ! "${ns[@]}" true 2>/dev/null; then
    echo "skip: '${ns[*]}' does not work here; the checks above ran"
    [ "$failed" -eq 0 ] || e2e_finish
    exit 77
fi

cat /etc/hosts >"$work/hosts"
echo "127.0.0.1 login.localhost management.localhost graph.localhost vault.localhost $KV.vault.localhost" \
    >>"$work/hosts"
mkdir -p "$work/home" "$work/azcfg"
AZ_CFG=$work/azcfg # AZURE_CONFIG_DIR of the next az commands

# az ARGS...: one az command in its own mount namespace; stdout in $work/az.out, stderr in
# $work/az.err, exit status in $rc.
n=0
az_() {
    n=$((n + 1))
    set +e
    env -u HTTPS_PROXY -u https_proxy -u HTTP_PROXY -u http_proxy -u ALL_PROXY -u all_proxy \
        HOME="$work/home" AZURE_CONFIG_DIR="$AZ_CFG" REQUESTS_CA_BUNDLE="$AZSIM_CA" \
        AZURE_CORE_COLLECT_TELEMETRY=no AZURE_CORE_NO_COLOR=true AZURE_CORE_ONLY_SHOW_ERRORS=true \
        AZURE_CORE_OUTPUT=json \
        "${ns[@]}" bash -c 'mount --bind "$0" /etc/hosts && exec az "$@"' "$work/hosts" "$@" \
        >"$work/az.out" 2>"$work/az.err"
    rc=$?
    set -e
    cp "$work/az.out" "$work/out.$n"
    cp "$work/az.err" "$work/err.$n"
}
# ok NAME: the last az command exited 0 (its stderr is shown otherwise)
ok() {
    check "$1: exit $rc" "$([[ $rc == 0 ]]; echo $?)"
    [[ $rc == 0 ]] || head -c 2000 "$work/az.err"
}
# is NAME EXPR WANT: a Python expression over the last output (d) equals WANT
is() {
    local got
    got=$(json "$2" <"$work/az.out" 2>/dev/null) || got="<no JSON: $(head -c 200 "$work/az.out")>"
    check "$1 ($got)" "$([[ $got == "$3" ]]; echo $?)"
}

# ---- the cloud ----
cat >"$work/cloud.json" <<EOF
{"endpoints": {"activeDirectory": "https://login.localhost:$P/adfs",
               "activeDirectoryResourceId": "$ARM/",
               "resourceManager": "$ARM/",
               "management": "$ARM/",
               "activeDirectoryGraphResourceId": "$KVR_GRAPH_ENDPOINT/",
               "microsoftGraphResourceId": "$KVR_GRAPH_ENDPOINT/"},
 "suffixes": {"keyvaultDns": ".vault.localhost:$P"}}
EOF
az_ cloud register -n azsim --cloud-config "@$work/cloud.json"
ok "az cloud register"
az_ cloud set -n azsim
ok "az cloud set"
az_ cloud show
is "az cloud show: azsim is the active cloud" 'd["name"], d["isActive"]' "('azsim', True)"

# ---- sign in (AD FS discovery, token, then the subscription list) ----
az_ login --service-principal -u "$AZURE_CLIENT_ID" -p "$AZURE_CLIENT_SECRET" --tenant "$AZURE_TENANT_ID"
ok "az login --service-principal"
is "az login: the subscription, in azsim's tenant" 'len(d), d[0]["id"], d[0]["tenantId"], d[0]["user"]["type"]' \
    "(1, '$AZURE_SUBSCRIPTION_ID', '$AZURE_TENANT_ID', 'servicePrincipal')"
az_ account show
is "az account show" 'd["environmentName"], d["id"], d["state"], d["user"]["name"]' \
    "('azsim', '$AZURE_SUBSCRIPTION_ID', 'Enabled', '$AZURE_CLIENT_ID')"
az_ account get-access-token --resource "$VAULT_RES"
is "az account get-access-token for Key Vault" 'd["tokenType"], d["tenant"], len(d["accessToken"].split("."))' \
    "('Bearer', '$AZURE_TENANT_ID', 3)"

# ---- ARM: resource group and vault ----
az_ group create -n $RG -l westeurope --tags owner=azcli
ok "az group create"
is "az group create: answer" 'd["id"], d["location"], d["properties"]["provisioningState"], d["tags"]' \
    "('$SUB/resourceGroups/$RG', 'westeurope', 'Succeeded', {'owner': 'azcli'})"
az_ group show -n $RG
is "az group show" 'd["name"]' "$RG"

az_ keyvault create -n $KV -g $RG -l westeurope --enable-rbac-authorization true --retention-days 7
ok "az keyvault create"
is "az keyvault create: answer" \
    'd["properties"]["vaultUri"], d["properties"]["enableRbacAuthorization"], d["properties"]["softDeleteRetentionInDays"], d["properties"]["tenantId"]' \
    "('https://$KV.vault.localhost:$P/', True, 7, '$AZURE_TENANT_ID')"
az_ keyvault show -n $KV -g $RG
is "az keyvault show -g" 'd["id"], d["location"], d["properties"]["sku"]["name"]' \
    "('$SUB/resourceGroups/$RG/providers/Microsoft.KeyVault/vaults/$KV', 'westeurope', 'standard')"
az_ keyvault show -n $KV
ok "az keyvault show without -g (found through the subscription's resource list)"
is "az keyvault show without -g" 'd["name"], d["resourceGroup"]' "('$KV', '$RG')"
az_ keyvault list
is "az keyvault list" '[v["name"] for v in d]' "['$KV']"
az_ keyvault list -g $RG
is "az keyvault list -g" '[v["name"] for v in d]' "['$KV']"

KVURL="https://$KV.vault.localhost:$P"
kv() { # kv METHOD PATH [BODY]: a Key Vault call through az rest (packaging gap, see the top)
    local args=(rest --method "$1" --url "$KVURL$2" --resource "$VAULT_RES")
    [ -z "${3:-}" ] || args+=(--body "$3")
    az_ "${args[@]}"
}

# ---- keys (az rest: 'az keyvault key ...' fails in this package, see the top); the bootstrap
# principal holds Key Vault Administrator on the subscription ----
kv post "/keys/k1/create?api-version=7.4" '{"kty":"RSA","key_size":2048,"key_ops":["wrapKey","unwrapKey"]}'
ok "key create"
is "key create: answer" 'd["key"]["kid"].rsplit("/", 1)[0], d["key"]["kty"], d["key"]["key_ops"], d["attributes"]["enabled"]' \
    "('$KVURL/keys/k1', 'RSA', ['wrapKey', 'unwrapKey'], True)"
kid1=$(json 'd["key"]["kid"]' <"$work/az.out" 2>/dev/null || echo none)
kv get "/keys/k1?api-version=7.4"
is "key show" 'd["key"]["kid"], len(d["key"]["n"]) > 300' "('$kid1', True)"
kv post "/keys/k1/rotate?api-version=7.4"
ok "key rotate"
kid2=$(json 'd["key"]["kid"]' <"$work/az.out" 2>/dev/null || echo none)
check "key rotate: a new version ($kid2)" "$([[ $kid2 == "$KVURL/keys/k1/"* && $kid2 != "$kid1" ]]; echo $?)"
kv get "/keys/k1?api-version=7.4"
is "key show after rotate: the new version" 'd["key"]["kid"]' "$kid2"
kv get "/keys/k1/versions?api-version=7.4"
is "key list-versions: both versions" 'sorted(v["kid"] for v in d["value"]) == sorted(["'"$kid1"'", "'"$kid2"'"])' True
kv get "/keys?api-version=7.4"
is "key list" '[k["kid"] for k in d["value"]]' "['$KVURL/keys/k1']"

# ---- secrets (az rest: 'az keyvault secret ...' fails in this package, see the top) ----
kv put "/secrets/s1?api-version=7.4" '{"value":"azcli-test-value","contentType":"text/plain"}'
ok "secret set"
kv get "/secrets/s1?api-version=7.4"
is "secret show" 'd["value"], d["contentType"], d["id"].rsplit("/", 1)[0]' \
    "('azcli-test-value', 'text/plain', '$KVURL/secrets/s1')"
kv put "/secrets/s2?api-version=7.4" '{"value":"second"}'
kv delete "/secrets/s2?api-version=7.4"
is "secret delete: soft-deleted" 'd["recoveryId"], "scheduledPurgeDate" in d' "('$KVURL/deletedsecrets/s2', True)"
kv get "/secrets?api-version=7.4"
is "secret list" '[s["id"] for s in d["value"]]' "['$KVURL/secrets/s1']"

# ---- a second principal, made with az ad (Graph) ----
az_ ad sp show --id "$AZURE_CLIENT_ID"
is "az ad sp show --id APPID" 'd["appId"], d["servicePrincipalType"]' "('$AZURE_CLIENT_ID', 'Application')"
az_ ad app create --display-name azcli-reader
ok "az ad app create"
rapp=$(json 'd["appId"]' <"$work/az.out" 2>/dev/null || echo none)
az_ ad sp create --id "$rapp"
ok "az ad sp create"
roid=$(json 'd["id"]' <"$work/az.out" 2>/dev/null || echo none)
is "az ad sp create: appId" 'd["appId"]' "$rapp"
az_ ad app credential reset --id "$rapp"
ok "az ad app credential reset"
is "az ad app credential reset: appId and tenant" 'd["appId"], d["tenant"]' "('$rapp', '$AZURE_TENANT_ID')"
rpass=$(json 'd["password"]' <"$work/az.out" 2>/dev/null || echo none)
rm -f "$work/az.out" "$work/out.$n" # the new password is not kept in the scratch dir

# ---- role assignment (az rest: 'az role assignment create|list' fail in this package, see the
# top): Key Vault Secrets User for the new principal on the vault ----
KSU=4633458b-17de-408a-b874-0445c86b69e6 # Key Vault Secrets User
scope="$SUB/resourceGroups/$RG/providers/Microsoft.KeyVault/vaults/$KV"
ra=3f8a1e52-5c7b-4b0e-9d35-6f2c1a0b7e11
az_ rest --method put --url "$ARM$scope/providers/Microsoft.Authorization/roleAssignments/$ra?api-version=2022-04-01" \
    --body "{\"properties\":{\"roleDefinitionId\":\"$SUB/providers/Microsoft.Authorization/roleDefinitions/$KSU\",\"principalId\":\"$roid\",\"principalType\":\"ServicePrincipal\"}}"
ok "role assignment create (az rest)"
is "role assignment: answer" 'd["name"], d["properties"]["principalId"], d["properties"]["scope"], d["properties"]["roleDefinitionId"].split("/")[-1]' \
    "('$ra', '$roid', '$scope', '$KSU')"
az_ rest --method get --url "$ARM$scope/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&\$filter=atScope()"
is "role assignment list at the vault (az rest) holds it" '"'"$ra"'" in [a["name"] for a in d["value"]]' True

# ---- the second principal signs in (its own AZURE_CONFIG_DIR) ----
mkdir -p "$work/azcfg2"
cp "$work/azcfg/clouds.config" "$work/azcfg/config" "$work/azcfg2/" # the cloud, and that it is active
boot_cfg=$AZ_CFG
AZ_CFG=$work/azcfg2
az_ login --service-principal -u "$rapp" -p "$rpass" --tenant "$AZURE_TENANT_ID"
ok "az login as the new principal"
is "az login: it sees the subscription through its vault role" 'd[0]["id"], d[0]["user"]["name"]' \
    "('$AZURE_SUBSCRIPTION_ID', '$rapp')"
# azsim runs with --rbac-delay 600: the data plane does not see the role yet (the clock is moved
# less than a token lifetime, 3599 s: the CLI keeps its cached token by its own clock)
kv get "/secrets/s1?api-version=7.4"
check "secret read before the role propagates is refused (exit $rc)" "$([[ $rc != 0 ]]; echo $?)"
check "... with 403 Forbidden" "$(grep -q 'Forbidden' "$work/az.err"; echo $?)"
azsim_advance 601
kv get "/secrets/s1?api-version=7.4"
ok "secret read once the role is seen"
is "secret read by Key Vault Secrets User" 'd["value"]' azcli-test-value
kv post "/keys/k2/create?api-version=7.4" '{"kty":"RSA","key_size":2048}'
check "key create by Key Vault Secrets User is refused (exit $rc)" "$([[ $rc != 0 ]]; echo $?)"
check "... with 403 Forbidden" "$(grep -q 'Forbidden' "$work/az.err"; echo $?)"
az_ logout
ok "az logout (new principal)"
AZ_CFG=$boot_cfg

# ---- sign out ----
az_ logout
ok "az logout"
az_ account show
check "az account show after logout fails (exit $rc)" "$([[ $rc != 0 ]]; echo $?)"

# the principal's secret appears in no az output (the CLI keeps it in AZURE_CONFIG_DIR by design)
hits=$(grep -lF -e "$AZURE_CLIENT_SECRET" -e "$rpass" "$work"/out.* "$work"/err.* 2>/dev/null || true)
check "the principals' secrets appear in no az output" "$([[ -z $hits ]]; echo $?)"
e2e_sanitizer_scan
e2e_finish

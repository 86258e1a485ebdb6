#!/usr/bin/env bash
# azsim's directory semantics for role assignments: a principal the directory does not hold gets
# Azure's 400 PrincipalNotFound (principal named without dashes, the tenant, the replication
# hint), with or without principalType; with --directory-delay S a service principal created less
# than S seconds (simulated clock) ago is refused the same way, and accepted once the delay has
# passed. Usage: test_directory.sh PATH/TO/azsim. Needs bash, curl and python3.
set -euo pipefail

AZSIM_BIN=${1:?usage: test_directory.sh PATH/TO/azsim}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

. "$(dirname "$0")/testlib.sh"
azsim_test_setup azsim-directory

azsim_test_start --directory-delay 3000
MT=$(azsim_test_token "$KVR_ARM_ENDPOINT")
GT=$(azsim_test_token "$KVR_GRAPH_ENDPOINT")
SUB="$KVR_ARM_ENDPOINT/subscriptions/$AZURE_SUBSCRIPTION_ID"
GRAPH=$KVR_GRAPH_ENDPOINT/v1.0
DEF="/subscriptions/$AZURE_SUBSCRIPTION_ID/providers/Microsoft.Authorization/roleDefinitions/4633458b-17de-408a-b874-0445c86b69e6"
ra_body() { # ra_body PRINCIPAL [TYPE]
    echo "{\"properties\":{\"roleDefinitionId\":\"$DEF\",\"principalId\":\"$1\"${2:+,\"principalType\":\"$2\"}}}"
}
RA="$SUB/providers/Microsoft.Authorization/roleAssignments"
expected_msg() { # expected_msg PRINCIPAL
    echo "Principal ${1//-/} does not exist in the directory $AZURE_TENANT_ID. Check that you have the correct principal ID. If you are creating this principal and then immediately assigning a role, this error might be related to a replication delay. In this case, set the role assignment principalType property to a value, such as ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype"
}

# a principal that never existed
GHOST=0f14a80d-42e5-4d57-afe0-46acf9dfae05
for t in "" ServicePrincipal; do
    req PUT "$RA/11111111-2222-4333-8444-555555555555?api-version=2022-04-01" "$(ra_body $GHOST $t)" "$MT"
    is 400 && [ "$(j 'b["error"]["code"]')" = PrincipalNotFound ] &&
        [ "$(j 'b["error"]["message"]')" = "$(expected_msg $GHOST)" ] &&
        ok "unknown principal (principalType '${t:-none}'): 400 PrincipalNotFound with Azure's message" ||
        fail "unknown principal (principalType '${t:-none}')" "$STATUS $(head -c 400 "$WORK/body")"
done

# a service principal created just now: unknown to role assignments for 30 s of the simulated clock
req POST "$GRAPH/applications" '{"displayName":"fresh"}' "$GT"
APP_ID=$(j 'b["appId"]')
req POST "$GRAPH/servicePrincipals" "{\"appId\":\"$APP_ID\"}" "$GT"
is 201 || fail "service principal created" "$STATUS"
SP=$(j 'b["id"]')
req PUT "$RA/21111111-2222-4333-8444-555555555555?api-version=2022-04-01" "$(ra_body "$SP" ServicePrincipal)" "$MT"
is 400 && [ "$(j 'b["error"]["code"]')" = PrincipalNotFound ] &&
    ok "a new service principal is not found during --directory-delay" ||
    fail "new service principal during the delay" "$STATUS $(head -c 300 "$WORK/body")"
req GET "$GRAPH/servicePrincipals/$SP" "" "$GT"
is 200 && ok "Graph itself serves the new service principal at once" || fail "Graph serves the new service principal" "$STATUS"
req POST "$AZSIM_URL/clock/advance" '{"seconds":3001}'
req PUT "$RA/21111111-2222-4333-8444-555555555555?api-version=2022-04-01" "$(ra_body "$SP" ServicePrincipal)" "$MT"
is 201 && [ "$(j 'b["properties"]["principalId"]')" = "$SP" ] &&
    ok "after the delay the role assignment is created (201)" ||
    fail "after the delay" "$STATUS $(head -c 300 "$WORK/body")"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]

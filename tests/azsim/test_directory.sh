#!/usr/bin/env bash
# azsim's directory semantics for role assignments: a principal the directory does not hold gets
# Azure's 400 PrincipalNotFound (principal named without dashes, the tenant, the replication
# hint), with or without principalType; with --directory-delay S a service principal created less
# than S seconds (simulated clock) ago is refused the same way, and accepted once the delay has
# passed. Then Graph's application tags (set on create and upsert, replaced by PATCH, the
# tags/any filter with paging) and deleted items: a deleted application leaves /applications and
# sign-in, is listed, got, restored (without its service principal; not over a uniqueName in use)
# and permanently deleted under /directory/deletedItems, and is purged 30 days (simulated clock)
# after its deletion. Usage: test_directory.sh PATH/TO/azsim. Needs bash, curl and python3.
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


# ---- Graph: application tags ----
# Each check below reads the status of the condition just before it, so a false one must not
# end the script.
set +e
# check NAME: passes when the last command succeeded, else fails showing the last answer
check() {
    local rc=$?
    [ $rc -eq 0 ] && ok "$1" || fail "$1" "$STATUS $(head -c 300 "$WORK/body")"
}
GT=$(azsim_test_token "$KVR_GRAPH_ENDPOINT") # the clock moved: a fresh token
DELETED="$GRAPH/directory/deletedItems"
DELAPPS="$DELETED/microsoft.graph.application"
req POST "$GRAPH/applications" '{"displayName":"tagged","tags":["kvr:managed","Team-A"]}' "$GT"
is 201 && has 'b["tags"]' '["kvr:managed", "Team-A"]' && has 'b["deletedDateTime"]' None
check "graph: POST /applications keeps its tags (201)"
T_OID=$(j 'b["id"]')
T_APP=$(j 'b["appId"]')
for bad in '"kvr:managed"' '[1]' 'null' '{"a":"b"}'; do
    req POST "$GRAPH/applications" "{\"displayName\":\"bad tags\",\"tags\":$bad}" "$GT"
    is 400 && has 'b["error"]["code"]' Request_BadRequest &&
        has 'b["error"]["message"]' "Invalid value specified for property 'tags' of resource 'Application'."
    check "graph: tags $bad on create is 400 Request_BadRequest"
done
req PATCH "$GRAPH/applications/$T_OID" '{"displayName":"renamed","tags":[7]}' "$GT"
is 400 && has 'b["error"]["code"]' Request_BadRequest
check "graph: PATCH with a tag that is not a string is 400"
req GET "$GRAPH/applications/$T_OID" "" "$GT"
has '[b["displayName"], b["tags"]]' '["tagged", ["kvr:managed", "Team-A"]]'
check "graph: GET returns the tags; the refused PATCH changed nothing"
req PATCH "$GRAPH/applications/$T_OID" '{"tags":["kvr:managed","rotated"]}' "$GT"
is 204
check "graph: PATCH tags (204)"
req GET "$GRAPH/applications(appId='$T_APP')" "" "$GT"
has '[b["displayName"], b["tags"]]' '["tagged", ["kvr:managed", "rotated"]]'
check "graph: PATCH replaced the whole list of tags"
req PATCH "$GRAPH/applications(appId='$T_APP')" '{"tags":[]}' "$GT"
req GET "$GRAPH/applications/$T_OID" "" "$GT"
has 'b["tags"]' '[]'
check "graph: PATCH by appId with tags [] clears them"
req PATCH "$GRAPH/applications/$T_OID" '{"tags":["kvr:managed","rotated"]}' "$GT"
UP="$GRAPH/applications(uniqueName='kvr-dir-tags')"
req PATCH "$UP" '{"displayName":"upserted","tags":["KVR:Managed"]}' "$GT" -H 'Prefer: create-if-missing'
is 201 && has 'b["tags"]' '["KVR:Managed"]' && has 'b["uniqueName"]' kvr-dir-tags
check "graph: upsert by uniqueName creates with tags (201)"
U_OID=$(j 'b["id"]')
req PATCH "$UP" '{"tags":["KVR:Managed","upserted"]}' "$GT" -H 'Prefer: create-if-missing'
is 204
check "graph: upsert of an existing uniqueName (204)"
req GET "$UP" "" "$GT"
has 'b["tags"]' '["KVR:Managed", "upserted"]'
check "graph: the upsert replaced the tags"

# the filter: without case, any lambda variable, %27 for the quotes, paging by $top
req GET "$GRAPH/applications?\$filter=tags/any(t:t%20eq%20'kvr:managed')" "" "$GT"
is 200 && has 'sorted(a["displayName"] for a in b["value"])' '["tagged", "upserted"]'
check "graph: \$filter=tags/any(t:t eq 'kvr:managed') matches both tagged apps, without case"
req GET "$GRAPH/applications?\$filter=tags/any(tag_1:tag_1%20eq%20%27ROTATED%27)" "" "$GT"
has '[a["id"] for a in b["value"]]' "[\"$T_OID\"]"
check "graph: tags/any with another variable and %27 quotes matches the one app"
req GET "$GRAPH/applications?\$filter=tags/any(t:t%20eq%20'nobody')" "" "$GT"
is 200 && has 'b["value"]' '[]'
check "graph: tags/any with no match is an empty list"
req GET "$GRAPH/applications?\$filter=tags/any(t:u%20eq%20'x')" "" "$GT"
is 400 && has 'b["error"]["code"]' Request_UnsupportedQuery
check "graph: a malformed tags lambda is 400 Request_UnsupportedQuery"
req GET "$GRAPH/servicePrincipals?\$filter=tags/any(t:t%20eq%20'x')" "" "$GT"
is 400 && has 'b["error"]["code"]' Request_UnsupportedQuery
check "graph: tags/any on service principals (which azsim gives no tags) is refused"
req GET "$GRAPH/applications?\$top=1&\$filter=tags/any(t:t%20eq%20'kvr:managed')" "" "$GT"
NEXT=$(j 'b.get("@odata.nextLink")')
FIRST=$(j 'b["value"][0]["id"]')
# shellcheck disable=SC2016 # the $filter below is a literal part of the link
has 'len(b["value"])' 1 &&
    case "$NEXT" in *'$filter=tags%2Fany%28t%3At%20eq%20%27kvr%3Amanaged%27%29'*) true ;; *) false ;; esac
check "graph: \$top=1 gives one app and a nextLink that keeps the tags filter"
req GET "$NEXT" "" "$GT"
has 'len(b["value"])' 1 && [ "$(j 'b["value"][0]["id"]')" != "$FIRST" ] &&
    has 'b.get("@odata.nextLink")' None
check "graph: the nextLink gives the other app and no further link"

# ---- Graph: deleted items ----
signin() { # signin CLIENT_ID SECRET: a client_credentials request for Graph; sets STATUS and body
    STATUS=$(curl -sS --cacert "$AZSIM_CA" -o "$WORK/body" -w '%{http_code}' -X POST \
        "$AZURE_AUTHORITY_HOST/$AZURE_TENANT_ID/oauth2/v2.0/token" -d grant_type=client_credentials \
        --data-urlencode "client_id=$1" --data-urlencode "client_secret=$2" \
        --data-urlencode "scope=$KVR_GRAPH_ENDPOINT/.default" 2>>"$WORK/curl.err") || STATUS=000
}
req POST "$GRAPH/servicePrincipals" "{\"appId\":\"$T_APP\"}" "$GT"
T_SP=$(j 'b["id"]')
req POST "$GRAPH/applications/$T_OID/addPassword" '{"passwordCredential":{"displayName":"p1"}}' "$GT"
T_SECRET=$(j 'b["secretText"]')
signin "$T_APP" "$T_SECRET"
is 200
check "entra: the tagged app signs in before its deletion"

req DELETE "$GRAPH/applications/$T_OID" "" "$GT"
is 204
check "graph: DELETE /applications/{id} (204)"
req GET "$GRAPH/applications/$T_OID" "" "$GT"
is 404 && has 'b["error"]["code"]' Request_ResourceNotFound
check "graph: the deleted app is 404 by id"
req GET "$GRAPH/applications(appId='$T_APP')" "" "$GT"
is 404
check "graph: the deleted app is 404 by appId"
req GET "$GRAPH/applications?\$filter=tags/any(t:t%20eq%20'kvr:managed')" "" "$GT"
has '[a["id"] for a in b["value"]]' "[\"$U_OID\"]"
check "graph: the deleted app is gone from the list"
req GET "$GRAPH/servicePrincipals/$T_SP" "" "$GT"
is 404
check "graph: its service principal is deleted"
signin "$T_APP" "$T_SECRET"
is 400 && has 'b["error"]' unauthorized_client && has 'b["error_codes"]' '[700016]' &&
    case "$(j 'b["error_description"]')" in
    "AADSTS700016: Application with identifier '$T_APP' was not found in the directory '$AZURE_TENANT_ID'."*) true ;;
    *) false ;;
    esac
check "entra: the deleted app cannot sign in (AADSTS700016, as for an unknown one)"

req GET "$DELAPPS" "" "$GT"
is 200 && has 'b["@odata.context"]' "$GRAPH/\$metadata#applications" &&
    has '[a["id"] for a in b["value"]]' "[\"$T_OID\"]" &&
    has '[b["value"][0][k] for k in ("appId", "displayName", "tags")]' "[\"$T_APP\", \"tagged\", [\"kvr:managed\", \"rotated\"]]" &&
    has 'len(b["value"][0]["passwordCredentials"])' 1
check "graph: GET /directory/deletedItems/microsoft.graph.application lists it with appId, tags, credentials"
DELETED_AT=$(j 'b["value"][0]["deletedDateTime"]')
NOW=$(curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/clock" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["now"])')
"$PY" -c 'import datetime, sys
t = datetime.datetime.strptime(sys.argv[1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
sys.exit(0 if abs(t.timestamp() - int(sys.argv[2])) < 120 else 1)' "$DELETED_AT" "$NOW"
check "graph: deletedDateTime ($DELETED_AT) is the simulated clock's time, ISO 8601"
req GET "$DELAPPS?\$filter=displayName%20eq%20'tagged'" "" "$GT"
has '[a["id"] for a in b["value"]]' "[\"$T_OID\"]"
check "graph: deleted items filtered by displayName eq"
req GET "$DELAPPS?\$filter=tags/any(t:t%20eq%20'ROTATED')" "" "$GT"
has '[a["id"] for a in b["value"]]' "[\"$T_OID\"]"
check "graph: deleted items filtered by tags/any"
req GET "$DELAPPS?\$filter=tags/any(t:t%20eq%20'nobody')" "" "$GT"
is 200 && has 'b["value"]' '[]'
check "graph: deleted items with a filter that matches none"
req GET "$DELETED/$T_OID" "" "$GT"
is 200 && has 'b["@odata.type"]' '#microsoft.graph.application' &&
    has 'b["@odata.context"]' "$GRAPH/\$metadata#directoryObjects/\$entity" &&
    has '[b["id"], b["appId"], b["deletedDateTime"]]' "[\"$T_OID\", \"$T_APP\", \"$DELETED_AT\"]"
check "graph: GET /directory/deletedItems/{id} is the app, typed, with its deletedDateTime"
req GET "$DELETED/$U_OID" "" "$GT"
is 404 && has 'b["error"]["code"]' Request_ResourceNotFound &&
    has 'b["error"]["message"]' "Resource '$U_OID' does not exist or one of its queried reference-property objects are not present."
check "graph: an active app is not a deleted item (404 Request_ResourceNotFound)"
req GET "$DELETED/microsoft.graph.group" "" "$GT"
is 400
check "graph: deleted groups are not modelled (400)"

# a restore is refused while an active app holds the deleted app's uniqueName
req DELETE "$UP" "" "$GT"
is 204
check "graph: DELETE /applications(uniqueName=...) (204)"
req GET "$UP" "" "$GT"
is 404
check "graph: the deleted app is 404 by uniqueName"
req POST "$GRAPH/applications" '{"displayName":"taker","uniqueName":"kvr-dir-tags"}' "$GT"
is 201
check "graph: a new app may take the uniqueName of a deleted one"
TAKER=$(j 'b["id"]')
req POST "$DELETED/$U_OID/restore" "" "$GT"
is 400 && has 'b["error"]["code"]' Request_BadRequest &&
    has 'b["error"]["message"]' "Another object with the same value for property uniqueName already exists."
check "graph: restore over a uniqueName in use is 400 Request_BadRequest"
req GET "$DELETED/$U_OID" "" "$GT"
is 200
check "graph: the refused restore left the app in deleted items"
req DELETE "$GRAPH/applications/$TAKER" "" "$GT"
req POST "$DELETED/$U_OID/restore" "" "$GT"
is 200 && has '[b["uniqueName"], b["deletedDateTime"]]' '["kvr-dir-tags", null]'
check "graph: with the uniqueName free again the restore succeeds"

# restore, delete again, delete for good
req POST "$DELETED/$T_OID/restore" "" "$GT"
is 200 && has 'b["@odata.type"]' '#microsoft.graph.application' && has 'b["deletedDateTime"]' None &&
    has '[b["id"], b["appId"], b["tags"]]' "[\"$T_OID\", \"$T_APP\", [\"kvr:managed\", \"rotated\"]]"
check "graph: POST /directory/deletedItems/{id}/restore (200, deletedDateTime null)"
req GET "$GRAPH/applications/$T_OID" "" "$GT"
is 200 && has 'b["tags"]' '["kvr:managed", "rotated"]'
check "graph: the restored app is back in /applications"
req GET "$DELETED/$T_OID" "" "$GT"
is 404
check "graph: the restored app has left deleted items"
req GET "$GRAPH/servicePrincipals(appId='$T_APP')" "" "$GT"
is 404
check "graph: its service principal is not restored"
signin "$T_APP" "$T_SECRET"
is 400 && has 'b["error_codes"]' '[7000229]'
check "entra: the restored app is known again, but without a service principal (AADSTS7000229)"
req POST "$GRAPH/servicePrincipals" "{\"appId\":\"$T_APP\"}" "$GT"
signin "$T_APP" "$T_SECRET"
is 200
check "entra: with a new service principal it signs in with its old secret"
req DELETE "$GRAPH/applications/$T_OID" "" "$GT"
is 204
check "graph: the restored app is deleted again (204)"
req DELETE "$DELETED/$T_OID" "" "$GT"
is 204
check "graph: DELETE /directory/deletedItems/{id} (204)"
req GET "$DELETED/$T_OID" "" "$GT"
is 404 && has 'b["error"]["code"]' Request_ResourceNotFound
check "graph: the permanently deleted app is 404 in deleted items"
req DELETE "$DELETED/$T_OID" "" "$GT"
is 404
check "graph: deleting it for good again is 404"
req POST "$DELETED/$T_OID/restore" "" "$GT"
is 404
check "graph: restoring it is 404"
req GET "$GRAPH/applications/$T_OID" "" "$GT"
is 404
check "graph: it is not an application either"

# the purge, 30 days (simulated clock) after the deletion; the (appId='...') key deletes too
req POST "$GRAPH/applications" '{"displayName":"purge-me","tags":["kvr:purge"]}' "$GT"
P_OID=$(j 'b["id"]')
P_APP=$(j 'b["appId"]')
req DELETE "$GRAPH/applications(appId='$P_APP')" "" "$GT"
is 204
check "graph: DELETE /applications(appId=...) (204)"
req POST "$AZSIM_URL/clock/advance" '{"seconds":2591940}' # 30 days less a minute
GT=$(azsim_test_token "$KVR_GRAPH_ENDPOINT")
req GET "$DELETED/$P_OID" "" "$GT"
is 200
check "graph: a deleted app is still restorable a minute before its 30 days are up"
req POST "$AZSIM_URL/clock/advance" '{"seconds":61}'
req GET "$DELETED/$P_OID" "" "$GT"
is 404
check "graph: 30 days after its deletion the app is purged"
req GET "$DELAPPS?\$filter=tags/any(t:t%20eq%20'kvr:purge')" "" "$GT"
is 200 && has 'b["value"]' '[]'
check "graph: the purged app is gone from the deleted items list"
req GET "$AZSIM_URL/stats"
has '[b["requests"].get("graph.deletedItems." + k, 0) > 0 for k in ("list", "get", "restore", "delete")]' '[true, true, true, true]'
check "stats: graph.deletedItems.list, .get, .restore and .delete are counted"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]

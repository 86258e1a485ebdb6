#!/usr/bin/env bash
# azsim writes its initial state durably at start (issue #18): killed with SIGKILL right after
# its ready line, before any request, it comes back with the same tenant, subscription and
# bootstrap principal (before, it saved only on writes and came back as a new tenant).
# usage: azsim_initial_state.sh AZSIM
set -euo pipefail
azsim=$(realpath "$1")
. "$(dirname "$0")/../e2e/lib.sh"
e2e_init
azsim_start "$azsim"
tenant=$AZURE_TENANT_ID sub=$AZURE_SUBSCRIPTION_ID client=$AZURE_CLIENT_ID
check "the state is on disk when azsim is ready" "$([ -s "$work/sim/state.sealed" ]; echo $?)"
azsim_kill
azsim_restart "$azsim"
check "same tenant after kill -9 ($AZURE_TENANT_ID)" "$([ "$AZURE_TENANT_ID" = "$tenant" ]; echo $?)"
check "same subscription" "$([ "$AZURE_SUBSCRIPTION_ID" = "$sub" ]; echo $?)"
check "same bootstrap principal" "$([ "$AZURE_CLIENT_ID" = "$client" ]; echo $?)"
check "its secret still gets a token" \
    "$([ -n "$(azsim_token "$KVR_ARM_ENDPOINT" 2>/dev/null)" ]; echo $?)"
azsim_stop
e2e_finish

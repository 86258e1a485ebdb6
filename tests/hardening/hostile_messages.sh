#!/usr/bin/env bash
# What a hostile server says reaches the terminal made safe, and size limits say "too large"
# (issue #18): kvreconcile plan against hostile_server.py prints an ARM error text without its
# right-to-left override, isolates, escape sequences or BEL (nor the JSON parser's quote of a
# body that is not JSON), and reports a 20 MB token response as too large (it was "not a json
# object").
# usage: hostile_messages.sh KVRECONCILE
set -euo pipefail
kvr=$(realpath "$1")
. "$(dirname "$0")/hostile_lib.sh"
hostile_start

plan() { # VAULT TENANT: kvreconcile plan of one vault; output in $out, exit status in $rc
    mkdir -p "$work/$1"
    printf 'apiVersion: kvreconcile/v1\nsubscription: 3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43\nvaults:\n  - name: %s\n    resourceGroup: rg\n    location: westeurope\n' \
        "$1" >"$work/$1/estate.yaml"
    set +e
    out=$(env AZURE_TENANT_ID="$2" AZURE_CLIENT_ID=00000000-0000-0000-0000-000000000002 \
        AZURE_CLIENT_SECRET=not-a-secret AZURE_AUTHORITY_HOST="https://login.localhost:$port" \
        KVR_ARM_ENDPOINT="https://management.localhost:$port" \
        KVR_GRAPH_ENDPOINT="https://graph.localhost:$port" KVR_VAULT_SUFFIX="vault.localhost:$port" \
        KVR_CA_FILE="$work/cert.pem" "$kvr" plan -f "$work/$1" 2>&1)
    rc=$?
    set -e
    printf "     %s\n" "$out" | cat -v
}

plan kv-rlo 00000000-0000-0000-0000-000000000001
check "the 403 is reported (exit $rc)" "$([ $rc = 1 ] && grep -q "AuthorizationFailed: denied for exe.txt" <<<"$out"; echo $?)"
check "no bidi override or isolate reaches the terminal" \
    "$(! printf '%s' "$out" | grep -q $'\xe2\x80\xae\|\xe2\x81\xa6\|\xe2\x81\xa9'; echo $?)"
check "no escape sequence or BEL reaches the terminal" \
    "$(! printf '%s' "$out" | grep -q $'\x1b\|\x07'; echo $?)"

plan kv-junk 00000000-0000-0000-0000-000000000001
check "a body that is not JSON is reported (exit $rc)" \
    "$([ $rc = 1 ] && grep -q "get vault 'kv-junk': the response is not JSON" <<<"$out"; echo $?)"
check "and the parser's quote of it is made safe" \
    "$(! printf '%s' "$out" | grep -q $'\x1b\|\xe2\x80\xae'; echo $?)"

plan kv-big 00000000-0000-0000-0000-00000000ffff
check "a 20 MB token response is 'too large' (exit $rc)" \
    "$([ $rc = 1 ] && grep -q "token response is too large" <<<"$out"; echo $?)"
[ "$fails" = 0 ]

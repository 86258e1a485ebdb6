#!/usr/bin/env bash
# A plan's first reads need a token each for ARM, Graph and the encryption profiles; they are
# asked for at once, not one after the other as each read is first handed out (three round trips
# to the identity platform before the first read). Here azsim holds the answer to the plan's
# first token request: while it is held, the other tokens must have been asked for too. One by
# one, the plan would wait for the held answer before asking for the next. With a wrong secret,
# each token is asked for once: the refusal met then is the one told.
# usage: plan_tokens_at_once.sh KVRECONCILE AZSIM
set -euo pipefail
. "$(dirname "$0")/lib.sh"
scenario_init "$1" "$2" rotate-app-credentials
azsim_start "$azsim" --subscription "$sub" --rbac-delay 0
kvr_apply "apply: the example's estate" 0 -f "$B" --wait 2m
cd "$work"

tokens() { azsim_requests login.token; }
t0=$(tokens)
id=$(azsim_hold POST login.localhost "/$AZURE_TENANT_ID/oauth2/v2.0/token")
"$kvr" plan -f "$B" >"$work/out.plan" 2>"$work/err.plan" &
pid=$!
E2E_PIDS=$pid
asked=0
end=$((SECONDS + 40)) # on a loaded machine with sanitizers; well within a request's 60 s
while ((SECONDS < end)); do
    if [[ $(azsim_hold_state "$id") == holding ]]; then
        asked=$(($(tokens) - t0))
        [[ $asked -ge 3 ]] && break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
done
check "while the first token's answer is held, the three tokens were asked for ($asked)" \
    "$([[ $asked == 3 ]]; echo $?)"
azsim_release "$id"
set +e; wait "$pid"; rc=$?; set -e
E2E_PIDS=
check "the plan ends (exit $rc)" "$([[ $rc == 0 ]]; echo $?)"
[[ $rc == 0 ]] || cat "$work/err.plan"
check "  and asked for no more tokens than before (4: ARM, Graph, profiles, Key Vault)" \
    "$([[ $(($(tokens) - t0)) == 4 ]]; echo $?)"

# a wrong secret: each token asked for once, at once, and the refusal told without asking again
t0=$(tokens)
set +e
AZURE_CLIENT_SECRET=not-the-secret "$kvr" plan -f "$B" >"$work/out.refused" 2>"$work/err.refused"
rc=$?
set -e
check "a wrong secret: the plan fails (exit $rc)" "$([[ $rc == 1 ]]; echo $?)"
check "  telling the identity platform's refusal" \
    "$(grep -q 'get token for .*http 401' "$work/err.refused"; echo $?)"
[[ $rc == 1 ]] || cat "$work/err.refused"
check "  after one request per token, not two ($(($(tokens) - t0)))" \
    "$([[ $(($(tokens) - t0)) == 3 ]]; echo $?)"
check "  and the secret is not in its output" \
    "$(! grep -q 'not-the-secret' "$work/out.refused" "$work/err.refused"; echo $?)"
e2e_sanitizer_scan
e2e_finish

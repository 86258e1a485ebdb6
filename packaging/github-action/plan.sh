#!/usr/bin/env bash
# The step of the kvreconcile GitHub action (action.yml): runs `kvreconcile plan -o markdown
# --detailed-exitcode` on KVR_ACTION_PATHS, writes the plan to $GITHUB_STEP_SUMMARY, sets the
# outputs exitcode, changes and plan, turns FILE:LINE:COL errors into annotations and, with
# KVR_ACTION_COMMENT=true on a pull request, posts the plan as a comment with `gh`.
# With KVR_ACTION_OUT, the plan is also saved there (plan --out) for `apply FILE` on merge.
# Exit 0 when the plan was made (0 or 2), else kvreconcile's status.
set -euo pipefail

bin=${KVR_ACTION_BIN:-kvreconcile}
tmp=${RUNNER_TEMP:-/tmp}
out="$tmp/kvreconcile-plan.md"
err="$tmp/kvreconcile-plan.err"
body="$tmp/kvreconcile-comment.md"
limit=60000 # a comment holds at most 65536 characters

args=()
set -f # the paths are names, not patterns
for p in ${KVR_ACTION_PATHS:-}; do
    args+=(-f "$p")
done
set +f
if [ -n "${KVR_ACTION_OUT:-}" ]; then
    args+=(--out "$KVR_ACTION_OUT") # the saved plan, for `kvreconcile apply FILE` after review
fi
if [ ${#args[@]} -eq 0 ]; then
    echo "::error::kvreconcile: the 'paths' input is empty"
    exit 1
fi

if [ "${KVR_ACTION_FEDERATED:-false}" = true ]; then
    if [ -z "${ACTIONS_ID_TOKEN_REQUEST_URL:-}" ]; then
        echo "::error::kvreconcile: federated-token needs 'permissions: id-token: write'"
        exit 1
    fi
    token_file="$tmp/kvreconcile-oidc-token"
    (
        umask 077 # kvreconcile refuses a token file that others can read
        curl -sSf -H "Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN" \
            "$ACTIONS_ID_TOKEN_REQUEST_URL&audience=api://AzureADTokenExchange" |
            python3 -c 'import json,sys; sys.stdout.write(json.load(sys.stdin)["value"])' >"$token_file"
    )
    export AZURE_FEDERATED_TOKEN_FILE=$token_file
fi

set +e
"$bin" plan "${args[@]}" -o markdown --detailed-exitcode >"$out" 2>"$err"
rc=$?
set -e
cat "$err" >&2

# FILE:LINE:COL: error: MESSAGE -> an annotation on that line of the pull request
re='^([^:]+):([0-9]+):([0-9]+): error: (.*)$'
while IFS= read -r line; do
    if [[ $line =~ $re ]]; then
        msg=${BASH_REMATCH[4]//'%'/'%25'}
        echo "::error file=${BASH_REMATCH[1]},line=${BASH_REMATCH[2]},col=${BASH_REMATCH[3]}::$msg"
    fi
done <"$err"

case $rc in
0) changes=false ;;
2) changes=true ;;
*) changes= ;;
esac
if [ -n "${GITHUB_OUTPUT:-}" ]; then
    {
        echo "exitcode=$rc"
        echo "changes=$changes"
        echo "plan=$out"
    } >>"$GITHUB_OUTPUT"
fi

{
    echo "### kvreconcile plan"
    echo
    if [ -n "$changes" ]; then
        cat "$out"
    else
        echo "kvreconcile plan failed (exit status $rc):"
        echo
        echo '```'
        cat "$err"
        echo '```'
    fi
} >"$body.full"
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
    cat "$body.full" >>"$GITHUB_STEP_SUMMARY"
fi

if [ "${KVR_ACTION_COMMENT:-false}" = true ]; then
    pr=
    if [ -n "${GITHUB_EVENT_PATH:-}" ] && [ -f "$GITHUB_EVENT_PATH" ]; then
        pr=$(python3 -c 'import json,sys; e=json.load(open(sys.argv[1])); print((e.get("pull_request") or {}).get("number") or "")' "$GITHUB_EVENT_PATH")
    fi
    if [ -z "$pr" ]; then
        echo "::notice::kvreconcile: not a pull request, no comment posted"
    else
        if [ "$(wc -c <"$body.full")" -gt "$limit" ]; then
            head -c "$limit" "$body.full" >"$body"
            printf '\n\n*(cut here: the whole plan is in the job summary)*\n' >>"$body"
        else
            cp "$body.full" "$body"
        fi
        gh pr comment "$pr" --repo "$GITHUB_REPOSITORY" --body-file "$body"
    fi
fi

if [ -z "$changes" ]; then
    exit "$rc"
fi
exit 0

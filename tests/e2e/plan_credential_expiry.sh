#!/usr/bin/env bash
# Credentials that never expire unnoticed (issue #15): inside its overlap before its end, the
# client secret the Used profile signs in with is a warning in every plan output (text, JSON,
# markdown) naming the app, the credential and the date; past its end it is an error-level
# finding, in apply's progress and in watch's status file. Findings change no exit status.
# usage: plan_credential_expiry.sh KVRECONCILE AZSIM
set -euo pipefail
. "$(dirname "$0")/lib.sh"
rotate_key_before_init "$1" "$2"
# the example's client secret lives 180 days, with an overlap of 14
azsim_advance $((170 * 86400))
set +e
NO_COLOR=1 "$kvr" plan -f "$B" --detailed-exitcode >"$work/plan.txt" 2>&1; rc=$?
"$kvr" plan -f "$B" -o json >"$work/plan.json" 2>/dev/null
"$kvr" plan -f "$B" -o markdown >"$work/plan.md" 2>/dev/null
set -e
check "170 days on: no change to make (exit $rc)" "$([[ $rc == 0 ]]; echo $?)"
check "  a warning in the text plan, with the app, credential and date" \
    "$(grep -A1 "warning: app 'aos-backup' credential '2026-05'" "$work/plan.txt" | grep -q 'ends at 20[0-9-]*T.*within its overlap of 14 days'; echo $?)"
check "  in the JSON plan" "$(json '[f["level"] for f in d["findings"]]' <"$work/plan.json" | grep -qx "\['warning'\]"; echo $?)"
check "  and in the markdown plan" "$(grep -q "^- warning app 'aos-backup' credential '2026-05': ends at" "$work/plan.md"; echo $?)"
azsim_advance $((11 * 86400))
set +e; NO_COLOR=1 "$kvr" plan -f "$B" >"$work/plan2.txt" 2>&1; set -e
check "181 days on: an error, the Used profile still signs in with it" \
    "$(grep -A1 "error: app 'aos-backup' credential '2026-05'" "$work/plan2.txt" | grep -q "expired at .*profile 'contoso-backup-2026-05' (Used) still signs in with it"; echo $?)"
set +e; "$kvr" watch "$B" --once --status-file "$work/status.json" >/dev/null 2>"$work/watch.err"; set -e
check "watch's status file shows it" \
    "$(json 'd["findings"][0]' <"$work/status.json" | grep -q "^error: app 'aos-backup' credential '2026-05': expired"; echo $?)"
check "and so does its progress" "$(grep -q "error: app 'aos-backup' credential '2026-05': expired" "$work/watch.err"; echo $?)"
e2e_finish

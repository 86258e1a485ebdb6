#!/usr/bin/env bash
# Every example's before/ and after/ state must validate, with no output on stderr.
# usage: check-examples.sh KVRECONCILE
set -u
bin=$1
cd "$(dirname "$0")/../examples" || exit 1
passed=0 failed=0
for state in */before */after; do
    [ -d "$state" ] || continue
    if err=$("$bin" validate -q -f "$state" 2>&1) && [ -z "$err" ]; then
        echo "ok   $state"
        passed=$((passed + 1))
    else
        echo "FAIL $state"
        echo "$err"
        failed=$((failed + 1))
    fi
done
[ $((passed + failed)) -gt 0 ] || { echo "no examples found"; failed=1; }
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

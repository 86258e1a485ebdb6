#!/usr/bin/env bash
# A list's next page goes out before the reads its vault has queued meanwhile. A vault's pages
# are a chain (each page's link comes with the page before), the longest one it has; queued
# behind the key reads that its key list brought, each secrets page waited for all of them
# (tests/bench/RESULTS.md, I). Here one vault, 25 declared keys (50 reads: each key and its
# versions) and 30 secrets (two pages), and azsim holds answers so that the order is decided by
# the reader alone, not by timing:
#   - the first secrets page and the first five key reads are held: with the first page's
#     answer, all six of the vault's connections are taken by held answers
#   - then a hold is set on the next secrets request (page 2) and on key k14's versions (the
#     30th read in the queue), and the first page is let go: one connection is free
#   - page 2 must be the one held next, while k14's versions has not been asked for. Queued last,
#     page 2 would go only after k14's versions, whose held answer takes the last connection:
#     page 2 would never be asked for while it is held.
# Then every hold is let go: the plan ends with exit 0, having read both secrets pages.
# usage: plan_next_page_first.sh KVRECONCILE AZSIM
set -euo pipefail
kvr=$(realpath "$1")
azsim=$(realpath "$2")
. "$(dirname "$0")/lib.sh"
e2e_init
sub=8d2e6f41-5a7c-4b19-8e3d-2f6a9c0b7d15
vault=kv-pages
mkdir "$work/D"
vault_keys_estate "$sub" "$vault" rg-pages 25 >"$work/D/estate.yaml"
estate_applied "apply: the vault and its 25 keys" "$sub"
host="$vault.vault.localhost"
tok=$(azsim_token "https://vault.localhost:$AZSIM_PORT")
written=0
for i in $(seq -w 0 29); do
    code=$(curl -sS --cacert "$AZSIM_CA" -X PUT "https://$host:$AZSIM_PORT/secrets/s$i?api-version=7.5" \
        -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' \
        -d "{\"value\":\"v$i\"}" -o /dev/null -w '%{http_code}')
    if [[ $code == 200 ]]; then written=$((written + 1)); fi
done
check "30 secrets written ($written)" "$([[ $written == 30 ]]; echo $?)"

hold() { azsim_hold GET "$host" "$1"; }

page1=$(hold /secrets)
first=()
for p in /keys/k00/ /keys/k00/versions /keys/k01/ /keys/k01/versions /keys/k02/; do
    first+=("$(hold "$p")")
done
lists() { azsim_requests kv.secrets.list; }
reads() { echo $(($(azsim_requests kv.keys.get) + $(azsim_requests kv.keys.versions))); }
before=$(lists)
reads0=$(reads)
"$kvr" plan -f D >"$work/out.plan" 2>"$work/err.plan" &
pid=$!
E2E_PIDS=$pid
azsim_held "$pid" "$page1" "${first[@]}"
check "the first secrets page and the first five key reads are held" $?
# the premise: the five held are the first key reads, and no other has gone
check "  and no other key read has been asked for" "$([[ $(($(reads) - reads0)) == 5 ]]; echo $?)"
page2=$(hold /secrets)
late=$(hold /keys/k14/versions)
azsim_release "$page1"
next=none
end=$((SECONDS + 40))
while ((SECONDS < end)); do
    if [[ $(azsim_hold_state "$page2") == holding ]]; then
        next=page2
        break
    fi
    if [[ $(azsim_hold_state "$late") == holding ]]; then
        next=k14
        break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
done
check "the second secrets page is asked for before k14's versions (next: $next)" \
    "$([[ $next == page2 && $(azsim_hold_state "$late") == armed ]]; echo $?)"
for id in "${first[@]}" "$page2" "$late"; do
    azsim_release "$id"
done
set +e; wait "$pid"; rc=$?; set -e
E2E_PIDS=
check "the plan ends (exit $rc)" "$([[ $rc == 0 ]]; echo $?)"
[[ $rc == 0 ]] || cat "$work/err.plan"
check "  having read the two secrets pages" "$([[ $(($(lists) - before)) == 2 ]]; echo $?)"
e2e_sanitizer_scan
e2e_finish

#!/usr/bin/env bash
# A next link seen before ends a listing at once (issue #18): against a hostile HTTPS server on
# loopback whose listing links to itself (and, second case, loops over two pages), the listing
# stops with "leads back to page" after at most 3 GETs; before the fix it ran to the
# 10,000-page cap (446 s against Azure's latency).
# usage: paging_loop.sh PAGING_LOOP_DRIVER
set -euo pipefail
driver=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
fails=0
check() { if [ "$2" = 0 ]; then echo "ok   $1"; else echo "FAIL $1"; fails=$((fails + 1)); fi; }

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
python3 "$here/hostile_server.py" "$work/cert.pem" "$work/key.pem" "$work/port" "$work/log" &
pid=$!
for _ in $(seq 1 100); do [ -f "$work/port" ] && break; sleep 0.1; done
port=$(cat "$work/port")
export KVR_CA_FILE="$work/cert.pem"

for path in self a; do
    : >"$work/log"
    set +e
    out=$("$driver" "https://localhost:$port" "https://localhost:$port/loop/$path" 2>&1)
    rc=$?
    set -e
    echo "     $out"
    gets=$(grep -c '^GET /loop/' "$work/log" || true)
    check "/loop/$path: stopped with the loop error" "$rc"
    check "/loop/$path: $gets GETs (at most 3)" "$([ "$gets" -le 3 ]; echo $?)"
done
[ "$fails" = 0 ]

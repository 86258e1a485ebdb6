#!/usr/bin/env bash
# azsim serves thousands of keep-alive connections with a few threads: a request that waits
# (the configured latency, a test's hold) suspends its connection instead of sleeping on a
# thread, and a stop while answers are held back ends cleanly. Usage: test_connections.sh
# PATH/TO/azsim. Needs bash, curl and python3.
set -euo pipefail

AZSIM_BIN=${1:?usage: test_connections.sh PATH/TO/azsim}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
CONNS=${CONNS:-2000}

. "$(dirname "$0")/testlib.sh"
azsim_test_setup azsim-conn

# the client and azsim each hold a socket per connection: raise the soft limit to the hard one,
# and test with fewer connections where the hard limit is lower (azsim keeps 64 for itself)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
room=$(($(ulimit -n) - 100))
[ "$room" -lt "$CONNS" ] && CONNS=$room
if [ "$CONNS" -lt 1100 ]; then
    echo "skip - the open-files limit ($(ulimit -n)) leaves room for only $CONNS connections"
    exit 77
fi

# ---- many connections at once, each waiting its latency ----
azsim_test_start --latency-ms 200
# The client opens every connection, sends one request on each (all of them waiting their
# 200 ms at once), and when every answer is in, says so and waits for a line on stdin while
# the connections stay open; then a second request on each connection, to show they were kept.
mkfifo "$WORK/go"
cat >"$WORK/client.py" <<'EOF'
import asyncio, ssl, sys

port, ca, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca)
REQ = ("GET /clock HTTP/1.1\r\nHost: azsim.localhost:%d\r\n\r\n" % port).encode()

async def ask(r, w):
    w.write(REQ)
    await w.drain()
    head = await r.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await r.readexactly(length)
    return status

async def one(sem):
    async with sem:  # bounds the handshakes in flight, not the connections held
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                             server_hostname="azsim.localhost")
    return r, w, await ask(r, w)

async def main():
    sem = asyncio.Semaphore(64)
    conns = await asyncio.wait_for(asyncio.gather(*(one(sem) for _ in range(n))), 300)
    first = sum(1 for c in conns if c[2] == 200)
    print("open %d answered %d" % (len(conns), first), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    again = await asyncio.wait_for(asyncio.gather(*(ask(r, w) for r, w, _ in conns)), 300)
    print("again %d" % sum(1 for s in again if s == 200), flush=True)
    for _, w, _ in conns:
        w.close()

asyncio.run(main())
EOF
"$PY" "$WORK/client.py" "$AZSIM_PORT" "$AZSIM_CA" "$CONNS" <"$WORK/go" >"$WORK/client.out" 2>"$WORK/client.err" &
CLIENT=$!
exec 3>"$WORK/go"
for _ in $(seq 1 2000); do
    grep -q '^open' "$WORK/client.out" 2>/dev/null && break
    kill -0 "$CLIENT" 2>/dev/null || break
    sleep 0.1
done
if grep -q "^open $CONNS answered $CONNS\$" "$WORK/client.out"; then
    ok "$CONNS connections open at once, each answered after its latency"
else
    fail "$CONNS connections answered" "$(cat "$WORK/client.out" "$WORK/client.err" | tail -c 600)"
fi
# while they are all open: a thread per connection would show thousands here
threads_with_conns=$(ls "/proc/$AZSIM_PID/task" | wc -l)
[ "$threads_with_conns" -le 32 ] &&
    ok "a few threads serve them all ($threads_with_conns threads for $CONNS connections)" ||
    fail "a few threads serve them all" "$threads_with_conns threads for $CONNS connections"
echo >&3
exec 3>&-
wait "$CLIENT" || true
grep -q "^again $CONNS\$" "$WORK/client.out" &&
    ok "every kept-alive connection answers a second request" ||
    fail "second request on each connection" "$(cat "$WORK/client.out" "$WORK/client.err" | tail -c 600)"

# held_apps OUT: arms a hold on Graph's app list, starts a request that it holds (status to OUT,
# pid in HELD_CLIENT) and waits until the hold says "holding"; the hold's id in HOLD
held_apps() {
    req POST "$AZSIM_URL/holds" '{"method":"GET","host":"graph.localhost","path":"/v1.0/applications"}' ""
    is 201 || fail "hold armed" "$STATUS"
    HOLD=$(j 'b["id"]')
    curl -sS --cacert "$AZSIM_CA" -m 60 -o /dev/null -w '%{http_code}' \
        "$KVR_GRAPH_ENDPOINT/v1.0/applications" >"$1" 2>/dev/null &
    HELD_CLIENT=$!
    for _ in $(seq 1 300); do
        req GET "$AZSIM_URL/holds/$HOLD" "" ""
        [ "$(j 'b["state"]')" = holding ] && break
        sleep 0.05
    done
}

# ---- a hold released before its request's connection is parked ----
# (AZSIM_TEST_HOLD_PARK_DELAY_MS widens that window; the release then found no one to wake, and
# the answer waited out the hold's 300 s)
kill -TERM "$AZSIM_PID"
wait "$AZSIM_PID" || true
AZSIM_TEST_HOLD_PARK_DELAY_MS=3000 azsim_test_start
held_apps "$WORK/early.status"
req DELETE "$AZSIM_URL/holds/$HOLD" "" "" # within the 3 s before the connection is parked
wait "$HELD_CLIENT" || true
[ "$(cat "$WORK/early.status")" = 401 ] &&
    ok "a hold released before its connection was parked: the answer still goes out" ||
    fail "a hold released early" "status $(cat "$WORK/early.status") (000: still held after 60 s)"

# ---- a stop while an answer is held back ----
held_apps "$WORK/held.status"
[ "$(j 'b["state"]')" = holding ] && ok "an answer is held" || fail "an answer is held" "$(cat "$WORK/body")"
# a held answer does not hold anything else up
req GET "$AZSIM_URL/clock" "" ""
is 200 && ok "other requests are answered while one is held" || fail "answered while held" "$STATUS"
kill -TERM "$AZSIM_PID"
rc=0
wait "$AZSIM_PID" || rc=$?
AZSIM_PID=
[ "$rc" = 0 ] && ok "a stop with an answer held ends cleanly" || fail "stop with a held answer" "exit $rc"
wait "$HELD_CLIENT" 2>/dev/null || true
if grep -qiE 'ERROR: (Address|Leak|Undefined)Sanitizer|runtime error|fatal error' "$WORK/stderr" 2>/dev/null; then
    fail "no sanitizer reports" "$(head -c 600 "$WORK/stderr")"
else
    ok "no sanitizer reports"
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]

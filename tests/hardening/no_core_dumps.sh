#!/usr/bin/env bash
# kvreconcile turns core dumps off at start (issue #18): a core of a running plan held
# AZURE_CLIENT_SECRET and bearer tokens. A running kvreconcile (watch on an invalid directory:
# it waits, with no network) must be non-dumpable and have a core limit of 0, and with
# KVR_ALLOW_CORE_DUMPS=1 must be neither, which shows the checks can tell the two apart.
#
# Dumpable is read from the owner of /proc/PID/status: the kernel gives a non-dumpable
# process's /proc files to root. As root every owner is root, so the process then runs as
# 'nobody' (setpriv). The core limit is read from /proc/PID/limits.
# usage: no_core_dumps.sh KVRECONCILE
set -euo pipefail
kvr=$(realpath "$1")
work=$(mktemp -d)
chmod 755 "$work"
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
fails=0
check() { if [ "$2" = 0 ]; then echo "ok   $1"; else echo "FAIL $1"; fails=$((fails + 1)); fi; }

mkdir "$work/estate"
printf 'apiVersion: kvreconcile/v1\nvaults: 3\n' >"$work/estate/bad.yaml"
chmod -R a+rX "$work/estate"
run_as=()
uid=$(id -u)
if [ "$uid" = 0 ]; then
    run_as=(setpriv --reuid=65534 --regid=65534 --clear-groups)
    uid=65534
fi
hard=$(ulimit -H -c)

# start watch; echo its pid once it is waiting (its stderr says so: an event, not a sleep)
start() {
    local log=$work/watch-$1.log
    : >"$log"
    chmod 666 "$log"
    env "${@:2}" "${run_as[@]}" "$kvr" watch "$work/estate" --interval 1h 2>"$log" >/dev/null &
    pid=$!
    for _ in $(seq 1 300); do
        grep -q 'waiting for a valid change' "$log" && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; return 1; }
        sleep 0.1
    done
    cat "$log" >&2
    return 1
}
# the hard limit: an ASan build lowers the soft one itself
core_limit() { awk '/^Max core file size/ {print $6}' "/proc/$pid/limits"; }
owner() { stat -c %u "/proc/$pid/status"; }
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

start default KVR_ALLOW_CORE_DUMPS=
check "non-dumpable: /proc/PID is root's (owner $(owner))" "$([ "$(owner)" = 0 ]; echo $?)"
check "core file size hard limit is 0 (got $(core_limit))" "$([ "$(core_limit)" = 0 ]; echo $?)"
stop

start allowed KVR_ALLOW_CORE_DUMPS=1
check "KVR_ALLOW_CORE_DUMPS=1: dumpable (owner $(owner), expected $uid)" \
    "$([ "$(owner)" = "$uid" ]; echo $?)"
if [ "$hard" != 0 ]; then
    check "KVR_ALLOW_CORE_DUMPS=1: hard core limit kept (got $(core_limit))" \
        "$([ "$(core_limit)" != 0 ]; echo $?)"
fi
stop

grep -q '^LimitCORE=0$' "$(dirname "$0")/../../packaging/systemd/kvreconcile-watch.service"
check "the systemd unit sets LimitCORE=0" $?
[ "$fails" = 0 ]

#!/usr/bin/env bash
# kvreconcile watch against azsim: the first run converges the rotate-key before/ state; an
# editor-style save (write a temporary file, rename it over) makes exactly one run; an invalid
# file is reported with its position and nothing is applied; copying in the pull request's
# after/ state runs it up to its retention gate; after azsim's clock moves 31 days, the periodic
# resync continues the rotation with no file change; SIGTERM stops watch with exit 0.
# usage: watch.sh KVRECONCILE AZSIM
set -euo pipefail
kvr=$(realpath "$1")
azsim=$(realpath "$2")
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"
e2e_init
azsim_start "$azsim" --subscription 3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43 --rbac-delay 2 --data-keys 20 --rewrap-rate 20
cfg="$work/cfg"
mkdir -p "$cfg/team"
cp "$root"/examples/rotate-key/before/vaults.yaml "$cfg/"
cp "$root"/examples/rotate-key/before/identity.yaml "$root"/examples/rotate-key/before/encryption.yaml "$cfg/team/"
status() { if [ -f "$work/status.json" ]; then json 'd["result"]' <"$work/status.json"; else echo none; fi; }
runs() { grep -c 'watch: run started' "$work/watch.log" || true; }
wait_for() { # seconds condition... (prints 0 when it became true, 1 when it did not)
    local limit=$1
    shift
    for _ in $(seq 1 $((limit * 10))); do "$@" && { echo 0; return; }; sleep 0.1; done
    echo 1
}
is_status() { [ "$(status)" = "$1" ]; }

# a link planted at the temporary name an older watch used (issue #18) must not be followed
echo precious >"$work/victim"
ln -s "$work/victim" "$work/status.json.tmp"
"$kvr" watch "$cfg" --interval 10m --status-file "$work/status.json" >/dev/null 2>"$work/watch.log" &
wpid=$!
E2E_PIDS=$wpid
check "first run converges before/" "$(wait_for 60 is_status converged)"
check "the status file is written through no predictable name" \
    "$([ "$(cat "$work/victim")" = precious ] && [ ! -L "$work/status.json" ]; echo $?)"
r0=$(runs)
sleep 1
cp "$cfg/vaults.yaml" "$cfg/.vaults.yaml.swp"
echo "# edited" >>"$cfg/.vaults.yaml.swp"
mv "$cfg/.vaults.yaml.swp" "$cfg/vaults.yaml"
sleep 2
check "one save (write and rename) makes exactly one run: $(($(runs) - r0))" "$([[ $(($(runs) - r0)) == 1 ]]; echo $?)"
cp "$cfg/vaults.yaml" "$work/vaults.good"
printf 'apiVersion: kvreconcile/v1\nvaults: [\n' >"$cfg/team/broken.yaml"
check "an invalid file is reported (status invalid)" "$(wait_for 10 is_status invalid)"
check "with its position" "$(grep -q 'broken.yaml:3:1: error: invalid YAML' "$work/watch.log"; echo $?)"
rm "$cfg/team/broken.yaml"
check "fixed: converged again" "$(wait_for 20 is_status converged)"
check "nothing was lost meanwhile" "$([[ $(azsim_lost) == 0 ]]; echo $?)"
cp "$root"/examples/rotate-key/after/encryption.yaml "$cfg/team/encryption.yaml"
check "the pull request runs up to its retention gate (status blocked)" "$(wait_for 60 is_status blocked)"
check "the status says what it waits for" "$(json 'd["waitingFor"]' <"$work/status.json" | grep -q retention; echo $?)"
# RequeueAfter: two minutes before the profile retention ends (30 days), a run (SIGHUP) is
# blocked only by it and watch comes back when it ends, not at the next 10-minute resync
azsim_advance $((30 * 86400 - 120))
n0=$(grep -c 'watch: the next gate opens' "$work/watch.log" || true)
kill -HUP "$wpid"
check "a run held only by retention requeues for when it ends" \
    "$(wait_for 30 eval '[ "$(grep -c "watch: the next gate opens" "$work/watch.log")" -gt "$n0" ]')"
secs=$(grep -o 'watch: the next gate opens in [0-9]*s' "$work/watch.log" | tail -1 | grep -o '[0-9]*' || echo 0)
check "  in about two minutes ($secs s), not ten" "$([[ $secs -gt 30 && $secs -le 121 ]]; echo $?)"
check "  the status file's nextRun says so" "$(/usr/bin/python3 - "$work/status.json" <<'PY'
import datetime, json, sys
d = json.load(open(sys.argv[1]))
t = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
sys.exit(0 if d["result"] == "blocked" and 20 < t(d["nextRun"]) - t(d["time"]) <= 122 else 1)
PY
echo $?)"
kill -TERM "$wpid"
set +e; wait "$wpid"; rc=$?; set -e
check "SIGTERM: watch exits 0" "$([[ $rc == 0 ]]; echo $?)"

"$kvr" watch "$cfg" --interval 2s --status-file "$work/status.json" >/dev/null 2>"$work/watch2.log" &
wpid=$!
E2E_PIDS=$wpid
azsim_advance $((86400))
check "after 31 days, a resync with no file change retires the old profile" "$(wait_for 20 grep -q "profile 'contoso-backup-2026-05': delete" "$work/watch2.log")"
kill -TERM "$wpid"
set +e; wait "$wpid"; rc=$?; set -e
check "SIGTERM again: exit 0" "$([[ $rc == 0 ]]; echo $?)"
check "no data key lost" "$([[ $(azsim_lost) == 0 ]]; echo $?)"
e2e_finish

#!/usr/bin/env bash
# kvreconcile watch: how fast a save starts a run, and what watch costs while idle.
# Builds a release tree (no sanitizers) in build-B-rel/, starts azsim, converges a copy of
# examples/rotate-key/before/ with `kvreconcile watch`, then
#   (a) saves vaults.yaml N times in place (open, truncate, write, close) and N times the way
#       editors do (write a hidden temporary file, rename it over), each time measuring from just
#       before the save to the moment watch's "watch: run started" line arrives on its stderr
#       (read by a thread that stamps every line on arrival), and how long the run took (until
#       the --status-file is replaced); every save adds a comment, so each run finds nothing
#       to do
#   (b) reads utime+stime (/proc/PID/stat) and the CPU time in /proc/PID/schedstat of the idle
#       watch process over IDLE seconds (no change, resync 1h away), and its context switches.
# Prints the figures and the machine. Targets: reaction < 100 ms, idle CPU < 0.5 %.
# usage: tests/bench/run_watch.sh [N] [IDLE_SECONDS]
#   KVRECONCILE=PATH measures that binary instead (e.g. a variant built elsewhere)
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-20}
idle=${2:-60}
# sanitizers off explicitly: a cached KVR_SANITIZE=ON would measure ASan, not watch
cmake -S . -B build-B-rel -DCMAKE_BUILD_TYPE=Release -DKVR_BENCH=ON -DKVR_SANITIZE=OFF >/dev/null
cmake --build build-B-rel -j"$(nproc)" --target kvreconcile azsim >/dev/null
kvr=$(realpath "${KVRECONCILE:-build-B-rel/bin/kvreconcile}")
if ldd "$kvr" | grep -q asan; then
    echo "$kvr links ASan: not a release build" >&2
    exit 1
fi
data=$(mktemp -d)
build-B-rel/bin/azsim --data "$data/sim" --port 0 --subscription 3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43 \
    --rbac-delay 0 >"$data/out" 2>"$data/err" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do grep -q '^azsim ready' "$data/out" 2>/dev/null && break; sleep 0.1; done
grep -q '^azsim ready' "$data/out" || { cat "$data/err"; exit 1; }
set -a; . "$data/sim/azsim.env"; set +a
mkdir -p "$data/cfg"
cp examples/rotate-key/before/*.yaml "$data/cfg/"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')," \
    "$(uname -sr), load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "kvreconcile: $kvr"
/usr/bin/python3 - "$kvr" "$data/cfg" "$data/status.json" "$n" "$idle" <<'EOF'
import math, os, statistics, subprocess, sys, threading, time

kvr, cfg, status, n, idle = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
target = os.path.join(cfg, "vaults.yaml")
original = open(target).read()
starts = []  # arrival times of "run started" lines
lock = threading.Condition()

proc = subprocess.Popen([kvr, "watch", cfg, "--interval", "1h", "--status-file", status],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

def reader():
    buf = b""
    while True:
        chunk = os.read(proc.stderr.fileno(), 65536)
        t = time.time()
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if b"watch: run started" in line:
                with lock:
                    starts.append(t)
                    lock.notify_all()

threading.Thread(target=reader, daemon=True).start()

def status_after(t, limit=60):
    """Waits until the status file is replaced after time t; returns when, or None."""
    end = time.time() + limit
    while time.time() < end:
        try:
            st = os.stat(status)
            if st.st_mtime_ns / 1e9 >= t:
                return st.st_mtime_ns / 1e9
        except FileNotFoundError:
            pass
        time.sleep(0.005)
    return None

def next_start(after, limit=10):
    with lock:
        end = time.time() + limit
        while True:
            fresh = [s for s in starts if s >= after]
            if fresh:
                return fresh[0]
            left = end - time.time()
            if left <= 0:
                return None
            lock.wait(left)

# the first run converges the estate
if status_after(0, 120) is None:
    sys.exit("watch did not finish its first run")
res = open(status).read()
if '"converged"' not in res:
    sys.exit("first run did not converge: " + res)
time.sleep(1)

def save_plain(i):
    with open(target, "w") as f:
        f.write(original + "# save %d\n" % i)

def save_rename(i):
    tmp = os.path.join(cfg, ".vaults.yaml.tmp")
    with open(tmp, "w") as f:
        f.write(original + "# save %d\n" % i)
    os.rename(tmp, target)

def pct(xs, p):  # nearest rank
    xs = sorted(xs)
    return xs[max(0, math.ceil(p / 100 * len(xs)) - 1)]

results = {}
for name, save in (("write in place", save_plain), ("write + rename", save_rename)):
    lat, runs, extra = [], [], 0
    for i in range(n):
        before = len(starts)
        t0 = time.time()
        save(i)
        t1 = next_start(t0)
        if t1 is None:
            sys.exit("%s: no run started within 10 s of save %d" % (name, i))
        done = status_after(t1)
        if done is None:
            sys.exit("%s: run after save %d did not finish" % (name, i))
        time.sleep(0.4)  # longer than the debounce: a second run for the same save would show
        extra += len(starts) - before - 1
        lat.append((t1 - t0) * 1000)
        runs.append((done - t1) * 1000)
        if '"converged"' not in open(status).read():
            sys.exit("%s: run after save %d did not converge" % (name, i))
    results[name] = lat
    print("%-15s save -> run start (ms): n=%d min %.0f median %.0f p95 %.0f max %.0f;"
          " run start -> status written: median %.0f ms; extra runs: %d"
          % (name, n, min(lat), statistics.median(lat), pct(lat, 95), max(lat),
             statistics.median(runs), extra))

def cpu():
    with open("/proc/%d/stat" % proc.pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    with open("/proc/%d/schedstat" % proc.pid) as f:
        ns = int(f.read().split()[0])
    sw = 0
    with open("/proc/%d/status" % proc.pid) as f:
        for line in f:
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                sw += int(line.split()[1])
    return ticks, ns, sw

time.sleep(2)
hz = os.sysconf("SC_CLK_TCK")
c0, w0 = cpu(), time.monotonic()
time.sleep(idle)
c1, w1 = cpu(), time.monotonic()
wall = w1 - w0
print("idle %.0f s: utime+stime %d ticks (%.3f %% CPU), schedstat %.1f ms (%.4f %% CPU),"
      " %d context switches, %d runs" % (wall, c1[0] - c0[0], (c1[0] - c0[0]) / hz / wall * 100,
      (c1[1] - c0[1]) / 1e6, (c1[1] - c0[1]) / 1e9 / wall * 100, c1[2] - c0[2],
      len([s for s in starts if s > time.time() - wall])))
proc.terminate()
rc = proc.wait(30)
print("SIGTERM: watch exited %d" % rc)
EOF

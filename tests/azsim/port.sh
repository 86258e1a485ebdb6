# Sourced by the suites that start azsim: azsim_port prints a loopback TCP port that is free now
# and lies below the kernel's ephemeral range (/proc/sys/net/ipv4/ip_local_port_range).
#
# azsim's own `--port 0` takes a port from that range. A suite that stops azsim and starts it
# again on the same port (kvreconcile and the clients under test name it in their endpoints)
# leaves the port unbound meanwhile, and the kernel may then give it to any outgoing connection
# on the machine as its source port: a parallel test's client, which opens thousands. azsim then
# cannot listen on it again ("azsim: cannot listen on 127.0.0.1:P"). No outgoing connection is
# ever given a port below the range, so only a listener can take one, and azsim_start (lib.sh)
# tries another when the port it was given was taken meanwhile. Prints 0 (let azsim choose) when
# the range cannot be read or no free port is found.
azsim_port() {
    /usr/bin/python3 - <<'PY'
import random, socket
try:
    lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    lo = 0
port = 0
first = max(1024, lo // 2)
for _ in range(100 if lo > first else 0):
    p = random.randrange(first, lo)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        port = p
        break
    except OSError:
        pass
    finally:
        s.close()
print(port)
PY
}

# Shared by the hardening scripts that talk to hostile_server.py (sourced, not run): a scratch
# dir in $work, the server on a free loopback port with a certificate made here, cleanup on exit,
# and the check tally ($fails).
#   hostile_start   make the certificate, start the server; sets $port, $pid and KVR_CA_FILE
#   check NAME STATUS
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
fails=0
check() { if [ "$2" = 0 ]; then echo "ok   $1"; else echo "FAIL $1"; fails=$((fails + 1)); fi; }

hostile_start() {
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost,DNS:login.localhost,DNS:management.localhost,DNS:graph.localhost,DNS:*.vault.localhost,IP:127.0.0.1 \
        -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
    python3 "$here/hostile_server.py" "$work/cert.pem" "$work/key.pem" "$work/port" "$work/log" &
    pid=$!
    for _ in $(seq 1 100); do [ -f "$work/port" ] && break; sleep 0.1; done
    port=$(cat "$work/port")
    export KVR_CA_FILE="$work/cert.pem"
}

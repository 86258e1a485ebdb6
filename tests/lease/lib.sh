# Shared by the azureblob lock tests (sourced after tests/e2e/lib.sh): Azurite, Microsoft's Azure
# Storage emulator (npm package azurite, pinned by package-lock.json here), on a free loopback
# port, over HTTPS with a certificate made for the test, in its OAuth mode (--oauth basic: it
# takes Entra bearer tokens; azsim issues them for https://storage.azure.com). Also the lease
# calls a test makes itself (curl, with azsim's token), to hold, break and inspect a lease.
#
#   azurite_start            start it (after azsim_start), export KVR_LOCK_* and KVR_CA_FILE
#   lease_container NAME     create a container
#   lease_curl ARGS...       curl with the storage token and x-ms-version / x-ms-date
#   lease_state BLOB         lease state of the blob: available, leased, expired, broken, ...
#   lease_hold BLOB ID       acquire the lease with id ID (60 s) and write a test holder
#   lease_drop BLOB ID       release it
#   lease_break BLOB         break it at once (as an operator would)
#   wait_for FILE REGEX [S]  wait until FILE has a line matching REGEX (default 120 s), else fail
#   hold_arm PATH            azsim holds the answer to the next ARM GET of PATH; prints its id
#   hold_wait ID PID...      until the hold holds a request (or every PID has ended)
#   hold_release ID          lets the held answer go

lease_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LEASE_ACCOUNT=devstoreaccount1 # Azurite's built-in account
LEASE_CONTAINER=locks

azurite_start() {
    local bin=$lease_dir/node_modules/.bin/azurite-blob
    # lease_apply and lease_watch run side by side: one installs, the other waits for it
    (
        flock 9
        if [[ ! -x $bin || $lease_dir/package-lock.json -nt $lease_dir/node_modules/.package-lock.json ]]; then
            cd "$lease_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null
        fi
    ) 9>"$lease_dir/.npm-ci.lock"
    mkdir -p "$work/azurite"
    # a CA of the test's own and a certificate for 127.0.0.1 signed by it
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=kvreconcile lease test CA" -keyout "$work/azurite/ca.key" -out "$work/azurite/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
        -keyout "$work/azurite/key.pem" -out "$work/azurite/csr.pem" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$work/azurite/ext"
    openssl x509 -req -in "$work/azurite/csr.pem" -CA "$work/azurite/ca.pem" -CAkey "$work/azurite/ca.key" \
        -CAcreateserial -days 2 -extfile "$work/azurite/ext" -out "$work/azurite/cert.pem" 2>/dev/null
    # port 0: Azurite binds a free port and says which
    (cd "$work/azurite" && exec "$bin" --blobHost 127.0.0.1 --blobPort 0 --cert cert.pem --key key.pem \
        --oauth basic --inMemoryPersistence --disableTelemetry --silent) >"$work/azurite/out" 2>&1 &
    AZURITE_PID=$!
    E2E_PIDS="${E2E_PIDS:-} $AZURITE_PID"
    for _ in $(seq 1 600); do
        grep -q 'listens on https://127.0.0.1:[0-9]*' "$work/azurite/out" 2>/dev/null && break
        kill -0 "$AZURITE_PID" 2>/dev/null || break
        sleep 0.1
    done
    AZURITE_URL=$(grep -o 'https://127.0.0.1:[0-9]*' "$work/azurite/out" | head -1)
    if [[ -z $AZURITE_URL ]]; then
        cat "$work/azurite/out"
        echo "0 passed, 1 failed (Azurite did not start)"
        exit 1
    fi
    # kvreconcile trusts azsim's CA and this one
    cat "$AZSIM_CA" "$work/azurite/ca.pem" >"$work/azurite/cas.pem"
    export KVR_CA_FILE=$work/azurite/cas.pem
    export KVR_LOCK_STORAGE_ACCOUNT=$LEASE_ACCOUNT KVR_LOCK_CONTAINER=$LEASE_CONTAINER
    export KVR_LOCK_BLOB_ENDPOINT=$AZURITE_URL/$LEASE_ACCOUNT # path style, as Azurite serves it
    STORAGE_TOKEN=$(azsim_token https://storage.azure.com)
}

lease_curl() {
    curl -sS --cacert "$work/azurite/ca.pem" -H "Authorization: Bearer $STORAGE_TOKEN" \
        -H 'x-ms-version: 2025-11-05' -H "x-ms-date: $(LC_ALL=C date -u '+%a, %d %b %Y %H:%M:%S GMT')" "$@"
}

lease_container() {
    lease_curl -X PUT -H 'Content-Length: 0' -o /dev/null -w '%{http_code}' \
        "$KVR_LOCK_BLOB_ENDPOINT/$1?restype=container"
}

lease_state() {
    lease_curl -I "$KVR_LOCK_BLOB_ENDPOINT/$LEASE_CONTAINER/$1" |
        tr -d '\r' | sed -n 's/^x-ms-lease-state: //Ip'
}

lease_hold() {
    local url=$KVR_LOCK_BLOB_ENDPOINT/$LEASE_CONTAINER/$1
    lease_curl -X PUT -H 'Content-Length: 0' -H 'x-ms-blob-type: BlockBlob' -H 'If-None-Match: *' -o /dev/null "$url"
    lease_curl -X PUT -H 'Content-Length: 0' -H 'x-ms-lease-action: acquire' -H 'x-ms-lease-duration: 60' \
        -H "x-ms-proposed-lease-id: $2" -o /dev/null -w '%{http_code}' "$url?comp=lease"
    lease_curl -X PUT -H 'Content-Length: 0' -H "x-ms-lease-id: $2" -H 'x-ms-meta-kvr_pid: 4242' \
        -H 'x-ms-meta-kvr_host: lease-test' -H 'x-ms-meta-kvr_command: apply' \
        -H 'x-ms-meta-kvr_since: 2026-01-01T00:00:00Z' -o /dev/null "$url?comp=metadata"
}

lease_drop() {
    lease_curl -X PUT -H 'Content-Length: 0' -H 'x-ms-lease-action: release' -H "x-ms-lease-id: $2" \
        -o /dev/null -w '%{http_code}' "$KVR_LOCK_BLOB_ENDPOINT/$LEASE_CONTAINER/$1?comp=lease"
}

lease_break() {
    lease_curl -X PUT -H 'Content-Length: 0' -H 'x-ms-lease-action: break' -H 'x-ms-lease-break-period: 0' \
        -o /dev/null -w '%{http_code}' "$KVR_LOCK_BLOB_ENDPOINT/$LEASE_CONTAINER/$1?comp=lease"
}

wait_for() {
    local i n=$((${3:-120} * 50))
    for ((i = 0; i < n; i++)); do
        grep -qE "$2" "$1" 2>/dev/null && return 0
        sleep 0.02
    done
    echo "timed out waiting for /$2/ in ${1##*/}"
    return 1
}

hold_arm() {
    curl -sS --cacert "$AZSIM_CA" -X POST "$AZSIM_URL/holds" -H 'Content-Type: application/json' \
        -d "{\"method\":\"GET\",\"host\":\"management.localhost\",\"path\":\"$1\"}" | json 'd["id"]'
}

hold_wait() {
    local id=$1 p alive
    shift
    while [[ $(curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/holds/$id" | json 'd["state"]') != holding ]]; do
        alive=0
        for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [[ $alive == 1 ]] || return 1
        sleep 0.02
    done
}

hold_release() {
    curl -sS --cacert "$AZSIM_CA" -X DELETE "$AZSIM_URL/holds/$1" >/dev/null
}

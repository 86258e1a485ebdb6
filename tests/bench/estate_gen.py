#!/usr/bin/python3
"""Desired state and azsim seeding for the estate-scale benchmarks (issue #8).

  estate_gen.py yaml DIR [--vaults N ...]    write DIR/estate/ (the whole estate, 100 vaults a
                                             file) and
                                             DIR/bootstrap.yaml (apps, credentials, profiles and
                                             what they need: a subset kvreconcile applies itself)
  estate_gen.py seed [--vaults N ...]        vaults, keys (EC P-256, VERSIONS versions each) and
                                             secrets over REST, in parallel (azsim started with
                                             --throttle off --durable off)
  estate_gen.py roles [--vaults N ...]       the role assignments, once the apps exist
  estate_gen.py reloc DIR --secrets N [--certificates M]
                                             a relocation: source vault with N secrets and M
                                             certificates (self-signed EC P-256, exportable, PEM;
                                             made with the openssl command), and DIR/reloc.yaml
                                             that copies them to a new vault

The environment is azsim's azsim.env. Everything the generator writes matches what kvreconcile
compares (vault properties, key shape and ops, secret content type and tags, role scope, role
and principal), so a plan of DIR/estate on the seeded azsim has nothing to do.
"""
import argparse
import http.client
import json
import os
import queue
import socket
import ssl
import subprocess
import sys
import threading
import urllib.parse
import uuid

SUB_ENV = "AZURE_SUBSCRIPTION_ID"
RG = "rg-bench"
LOCATION = "westeurope"
APPS = 5
PROFILES = 3
ROLE_VAULT = "Key Vault Crypto Service Encryption User"
ROLE_VAULT_ID = "e147488a-f6f5-4113-8e2d-b22465e65bf6"
ROLE_KEY = "Key Vault Crypto User"
ROLE_KEY_ID = "12338af0-0e69-4776-bea7-57ae8d297424"

# *.localhost is loopback (RFC 6761); glibc's resolver does not know it, so say it here.
_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host, *args, **kw):
    if isinstance(host, str) and (host == "localhost" or host.endswith(".localhost")):
        host = "127.0.0.1"
    return _real_getaddrinfo(host, *args, **kw)


socket.getaddrinfo = _getaddrinfo


def opts(argv):
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["yaml", "seed", "roles", "reloc"])
    p.add_argument("dir", nargs="?")
    p.add_argument("--vaults", type=int, default=200)
    p.add_argument("--keys", type=int, default=50)
    p.add_argument("--versions", type=int, default=3)
    p.add_argument("--secrets", type=int, default=200)
    p.add_argument("--roles", type=int, default=50, help="role assignments per vault")
    p.add_argument("--threads", type=int, default=12)
    p.add_argument("--certificates", type=int, default=0, help="reloc: certificates to copy")
    return p.parse_args(argv)


def vault_name(i):
    return "kv-b%03d" % i


def key_name(j):
    return "k%03d" % j


def secret_name(j):
    return "s%03d" % j


def vault_roles(o, i):
    """(app index, role name, role id, key or None) for vault i: every app at vault scope, the
    rest narrowed to one key each."""
    out = [(a, ROLE_VAULT, ROLE_VAULT_ID, None) for a in range(min(APPS, o.roles))]
    for j in range(o.roles - len(out)):
        out.append((j % APPS, ROLE_KEY, ROLE_KEY_ID, key_name(j % o.keys)))
    return out


# ---- YAML ----------------------------------------------------------------------------------


def q(s):
    return json.dumps(s)  # a JSON string is a valid YAML scalar


def vault_yaml(name, extra=""):
    return (f"  - name: {name}\n    resourceGroup: {RG}\n    location: {LOCATION}\n"
            f"    sku: standard\n    rbac: true\n    softDeleteDays: 90\n    purgeProtection: true\n"
            f"    tags: {{env: bench}}\n{extra}")


def identity_yaml(o):
    out = ["apps:\n"]
    for a in range(APPS):
        out.append(f"  - name: app-{a}\n    displayName: {q('bench app %d' % a)}\n    credentials:\n"
                   f"      - name: \"c1\"\n        lifetime: 180d\n        storeIn: "
                   f"{{vault: {vault_name(0)}, secret: app-{a}-c1}}\n")
    out.append("profiles:\n")
    for p in range(profiles(o)):
        out.append(f"  - name: prof-{p}\n    vault: {vault_name(p)}\n    key: dek\n"
                   f"    app: app-{p}\n    credential: \"c1\"\n")
    out.append("active: prof-0\n")
    return "".join(out)


def profiles(o):
    return min(PROFILES, o.vaults)  # one per vault, in the first vaults


def dek_yaml(o):
    return "".join(f"  - {{vault: {vault_name(p)}, name: dek, type: RSA, size: 2048}}\n"
                   for p in range(profiles(o)))


VAULTS_PER_FILE = 100  # about 2.4 MB of YAML: a file may hold 16 MiB (kvreconcile's limit)


def write_yaml(o):
    os.makedirs(o.dir, exist_ok=True)
    head = "apiVersion: kvreconcile/v1\nsubscription: %s\n" % os.environ[SUB_ENV]
    # the estate is a directory, as a team's repository is: the identity and the profile keys in
    # one file, then the vaults with their keys, secrets and roles, VAULTS_PER_FILE to a file
    est = os.path.join(o.dir, "estate")
    os.makedirs(est, exist_ok=True)
    for old in os.listdir(est):
        os.remove(os.path.join(est, old))
    with open(os.path.join(est, "identity.yaml"), "w") as f:
        f.write("".join([head, identity_yaml(o), "keys:\n", dek_yaml(o)]))
    for first in range(0, o.vaults, VAULTS_PER_FILE):
        chunk = range(first, min(first + VAULTS_PER_FILE, o.vaults))
        big = ["apiVersion: kvreconcile/v1\nvaults:\n"]
        big += [vault_yaml(vault_name(i)) for i in chunk]
        big.append("keys:\n")
        for i in chunk:
            for j in range(o.keys):
                big.append(f"  - {{vault: {vault_name(i)}, name: {key_name(j)}, type: EC, "
                           f"curve: P-256, ops: [sign, verify]}}\n")
        big.append("secrets:\n")
        for i in chunk:
            for j in range(o.secrets):
                big.append(f"  - {{vault: {vault_name(i)}, name: {secret_name(j)}, contentType: "
                           f"text/plain, generate: {{length: 32}}}}\n")
        big.append("roleAssignments:\n")
        for i in chunk:
            for a, role, _, key in vault_roles(o, i):
                k = f", key: {key}" if key else ""
                big.append(f"  - {{app: app-{a}, role: {q(role)}, vault: {vault_name(i)}{k}}}\n")
        with open(os.path.join(est, "vaults-%04d.yaml" % first), "w") as f:
            f.write("".join(big))
    # what kvreconcile applies itself: the same declarations, restricted to the profile vaults
    small = [head, identity_yaml(o), "vaults:\n"]
    small += [vault_yaml(vault_name(p)) for p in range(profiles(o))]
    small += ["keys:\n", dek_yaml(o), "roleAssignments:\n"]
    small += [f"  - {{app: app-{p}, role: {q(ROLE_VAULT)}, vault: {vault_name(p)}}}\n"
              for p in range(profiles(o))]
    with open(os.path.join(o.dir, "bootstrap.yaml"), "w") as f:
        f.write("".join(small))


# ---- REST ----------------------------------------------------------------------------------

ENV = os.environ
CTX = ssl.create_default_context(cafile=ENV.get("AZSIM_CA"))
_local = threading.local()


def request(method, url, body=None, token=None, form=None):
    """One request on this thread's one keep-alive connection: azsim picks the service by the
    Host header, so a connection per thread (not per thread and vault host, which would be
    thousands of azsim threads) serves every host."""
    u = urllib.parse.urlsplit(url)
    hdrs = {"Accept": "application/json", "Host": u.netloc}
    data = None
    if token:
        hdrs["Authorization"] = "Bearer " + token
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        hdrs["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    path = u.path + ("?" + u.query if u.query else "")
    for attempt in range(3):
        c = getattr(_local, "conn", None)
        if c is None:
            c = _local.conn = http.client.HTTPSConnection("azsim.localhost", u.port, context=CTX)
        try:
            c.request(method, path, body=data, headers=hdrs)
            r = c.getresponse()
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
        except (http.client.HTTPException, OSError):
            c.close()
            _local.conn = None
            if attempt == 2:
                raise
    raise AssertionError


def token(resource):
    st, b = request("POST", f"{ENV['AZURE_AUTHORITY_HOST']}/{ENV['AZURE_TENANT_ID']}/oauth2/v2.0/token",
                    form={"grant_type": "client_credentials", "client_id": ENV["AZURE_CLIENT_ID"],
                          "client_secret": ENV["AZURE_CLIENT_SECRET"], "scope": resource + "/.default"})
    if st != 200:
        sys.exit(f"estate_gen: token for {resource}: http {st} {b}")
    return b["access_token"]


def parallel(jobs, threads):
    """Runs (method, url, body, token, ok_statuses) jobs on `threads` threads; exits on a failure."""
    qu = queue.Queue()
    for j in jobs:
        qu.put(j)
    errors = []

    def work():
        while not errors:
            try:
                m, url, body, tok, ok = qu.get_nowait()
            except queue.Empty:
                return
            st, b = request(m, url, body, tok)
            if st not in ok:
                errors.append(f"{m} {url}: http {st} {json.dumps(b)[:300]}")

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        sys.exit("estate_gen: " + errors[0])


def arm_base():
    return f"{ENV['KVR_ARM_ENDPOINT']}/subscriptions/{ENV[SUB_ENV]}"


def vault_url(name):
    return f"https://{name}.{ENV['KVR_VAULT_SUFFIX']}"


def create_vaults(names, arm, threads):
    request("PUT", f"{arm_base()}/resourceGroups/{RG}?api-version=2021-04-01",
            {"location": LOCATION}, arm)
    props = {"tenantId": ENV["AZURE_TENANT_ID"], "sku": {"family": "A", "name": "standard"},
             "enableRbacAuthorization": True, "enableSoftDelete": True,
             "softDeleteRetentionInDays": 90, "enablePurgeProtection": True}
    parallel([("PUT", f"{arm_base()}/resourceGroups/{RG}/providers/Microsoft.KeyVault/vaults/{n}"
               "?api-version=2024-11-01", {"location": LOCATION, "tags": {"env": "bench"},
                                           "properties": props}, arm, (200, 201)) for n in names],
             threads)


def seed(o):
    arm = token(ENV["KVR_ARM_ENDPOINT"])
    kv = token("https://vault.localhost:" + ENV["AZSIM_PORT"])
    create_vaults([vault_name(i) for i in range(o.vaults)], arm, o.threads)
    jobs = []
    for v in range(o.versions):  # version v of every key before version v+1 of any
        for i in range(o.vaults):
            for j in range(o.keys):
                jobs.append(("POST", f"{vault_url(vault_name(i))}/keys/{key_name(j)}/create"
                             "?api-version=7.5", {"kty": "EC", "crv": "P-256",
                                                  "key_ops": ["sign", "verify"]}, kv, (200,)))
        parallel(jobs, o.threads)
        jobs = []
    for i in range(o.vaults):
        for j in range(o.secrets):
            jobs.append(("PUT", f"{vault_url(vault_name(i))}/secrets/{secret_name(j)}"
                         "?api-version=7.5", {"value": uuid.uuid4().hex, "contentType":
                                              "text/plain"}, kv, (200,)))
    parallel(jobs, o.threads)


def roles(o):
    arm = token(ENV["KVR_ARM_ENDPOINT"])
    graph = token(ENV["KVR_GRAPH_ENDPOINT"])
    sp = {}
    for a in range(APPS):
        lit = urllib.parse.quote("'bench app %d'" % a)
        st, b = request("GET", f"{ENV['KVR_GRAPH_ENDPOINT']}/v1.0/applications?$filter=displayName"
                        f"%20eq%20{lit}", token=graph)
        app_id = b["value"][0]["appId"]
        st, b = request("GET", f"{ENV['KVR_GRAPH_ENDPOINT']}/v1.0/servicePrincipals?$filter=appId"
                        f"%20eq%20'{app_id}'", token=graph)
        sp[a] = b["value"][0]["id"]
    jobs = []
    for i in range(o.vaults):
        scope = (f"/subscriptions/{ENV[SUB_ENV]}/resourceGroups/{RG}/providers/"
                 f"Microsoft.KeyVault/vaults/{vault_name(i)}")
        for a, _, rid, key in vault_roles(o, i):
            s = scope + (f"/keys/{key}" if key else "")
            body = {"properties": {"roleDefinitionId": f"/subscriptions/{ENV[SUB_ENV]}/providers/"
                                   f"Microsoft.Authorization/roleDefinitions/{rid}",
                                   "principalId": sp[a], "principalType": "ServicePrincipal"}}
            # 409: kvreconcile's bootstrap apply made it already
            jobs.append(("PUT", f"{ENV['KVR_ARM_ENDPOINT']}{s}/providers/Microsoft.Authorization/"
                         f"roleAssignments/{uuid.uuid4()}?api-version=2022-04-01", body, arm,
                         (200, 201, 409)))
    parallel(jobs, o.threads)


def reloc(o):
    """Source vault kv-src with N secrets; DIR/reloc.yaml declares it and kv-dst copying from it."""
    arm = token(ENV["KVR_ARM_ENDPOINT"])
    kv = token("https://vault.localhost:" + ENV["AZSIM_PORT"])
    create_vaults(["kv-src"], arm, 1)
    parallel([("PUT", f"{vault_url('kv-src')}/secrets/{secret_name(j)}?api-version=7.5",
               {"value": uuid.uuid4().hex, "contentType": "text/plain"}, kv, (200,))
              for j in range(o.secrets)], o.threads)
    os.makedirs(o.dir, exist_ok=True)
    jobs = []
    for j in range(o.certificates):
        name = "cert-%04d" % j
        key, crt = os.path.join(o.dir, name + ".key"), os.path.join(o.dir, name + ".crt")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=%s.bench.example" % name,
                        "-days", "400", "-keyout", key, "-out", crt], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(key) as k, open(crt) as c:
            pem = k.read() + c.read()
        os.remove(key)
        os.remove(crt)
        jobs.append(("POST", f"{vault_url('kv-src')}/certificates/{name}/import?api-version=7.5",
                     {"value": pem,
                      "policy": {"key_props": {"exportable": True, "kty": "EC", "crv": "P-256",
                                               "reuse_key": False},
                                 "secret_props": {"contentType": "application/x-pem-file"}}},
                     kv, (200,)))
    parallel(jobs, o.threads)
    with open(os.path.join(o.dir, "reloc.yaml"), "w") as f:
        f.write("apiVersion: kvreconcile/v1\nsubscription: %s\nvaults:\n" % ENV[SUB_ENV])
        f.write(vault_yaml("kv-src"))
        f.write(vault_yaml("kv-dst", "    copyFrom: {vault: kv-src, secrets: latest%s}\n"
                           % (", certificates: true" if o.certificates else "")))


def main():
    o = opts(sys.argv[1:])
    if o.cmd in ("yaml", "reloc") and not o.dir:
        sys.exit("estate_gen: %s needs DIR" % o.cmd)
    {"yaml": write_yaml, "seed": seed, "roles": roles, "reloc": reloc}[o.cmd](o)


if __name__ == "__main__":
    main()

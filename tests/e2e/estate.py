#!/usr/bin/python3
"""Invariants of a live estate in azsim, for the e2e reliability suites (used through lib.sh).

  estate.py snapshot OUT.json DESIRED_DIR...     what must survive: app object IDs, key versions,
                                                 digests of generated secret values
  estate.py check SNAPSHOT.json FINAL_DIR [OTHER_DIR...]
                                                 one "ok   ..." or "FAIL ..." line per invariant
  estate.py scan WORKDIR DESIRED_DIR...          no secret value (any version, any vault the
                                                 desired states name) in WORKDIR/{out,err,log}.*

FINAL_DIR is the desired state the estate has converged to; OTHER_DIRs (the earlier desired
states of the scenario) add the vaults to look in and the key generations a key may have had.
Talks to azsim with curl (it resolves *.localhost itself), with the variables of azsim.env.
Secret values are compared in memory and never printed.
"""
import glob
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.parse

import yaml

ENV = os.environ
PORT = ENV["AZSIM_PORT"]
CA = ENV["AZSIM_CA"]
KV_API = "api-version=7.5"
ARM_VAULTS = "api-version=2024-11-01"
ARM_ROLES = "api-version=2022-04-01"
PROFILES_API = "api-version=2026-01-01"
TAG_CREDENTIAL = "kvr-credential-key-id"

_tokens = {}


def curl(url, token=None, data=None):
    """(HTTP status, JSON body). The answers azsim's fault injection gives (500, 503, 429, a
    dropped connection, a stall past --max-time) are retried: the suites check the estate while
    faults are still on."""
    args = ["curl", "-sS", "--max-time", "75", "--cacert", CA, "-w", "\n%{http_code}"]
    if token:
        args += ["-H", "Authorization: Bearer " + token]
    if data is not None:
        args += ["--data-binary", data]
    for attempt in range(12):
        out = subprocess.run(args + [url], capture_output=True, check=False).stdout.decode()
        body, _, code = out.rpartition("\n")
        code = int(code) if code.strip().isdigit() else 0
        if code not in (0, 429, 500, 503):
            break
        time.sleep(min(0.1 * 2 ** attempt, 2.0))
    try:
        return code, (json.loads(body) if body.strip() else None)
    except ValueError:
        return code, None


def token(resource):
    if resource not in _tokens:
        form = urllib.parse.urlencode({
            "grant_type": "client_credentials", "client_id": ENV["AZURE_CLIENT_ID"],
            "client_secret": ENV["AZURE_CLIENT_SECRET"], "scope": resource + "/.default"})
        code, d = curl("https://login.localhost:%s/%s/oauth2/v2.0/token" % (PORT, ENV["AZURE_TENANT_ID"]),
                       data=form)
        if code != 200:
            raise SystemExit("azsim token for %s: HTTP %s" % (resource, code))
        _tokens[resource] = d["access_token"]
    return _tokens[resource]


def get(url, resource):
    return curl(url, token(resource))


def get_all(url, resource):
    """Every item of a paged list (value + nextLink / @odata.nextLink); None if not 200."""
    items = []
    while url:
        code, d = get(url, resource)
        if code != 200:
            return None if not items else items
        items += d.get("value", [])
        url = d.get("nextLink") or d.get("@odata.nextLink")
    return items


KV = "https://vault.localhost:%s" % PORT
GRAPH = "https://graph.localhost:%s" % PORT
ARM = "https://management.localhost:%s" % PORT
PROF = "https://profiles.localhost:%s" % PORT


def vault_url(v):
    return "https://%s.vault.localhost:%s" % (v, PORT)


def load(d):
    out = {"vaults": [], "keys": [], "secrets": [], "apps": [], "roleAssignments": [],
           "profiles": [], "active": None, "subscription": None}
    for f in sorted(glob.glob(os.path.join(d, "*.yaml")) + glob.glob(os.path.join(d, "*.yml"))):
        with open(f) as fh:
            for doc in yaml.safe_load_all(fh):
                if not isinstance(doc, dict):
                    continue
                for k in ("vaults", "keys", "secrets", "apps", "roleAssignments", "profiles"):
                    out[k] += doc.get(k) or []
                out["active"] = doc.get("active", out["active"])
                out["subscription"] = doc.get("subscription", out["subscription"])
    out["subscription"] = out["subscription"] or ENV.get("AZURE_SUBSCRIPTION_ID")
    return out


def all_vaults(states):
    names = []
    for s in states:
        for v in s["vaults"]:
            if v["name"] not in names:
                names.append(v["name"])
    return names


def vault_exists(v):
    code, _ = get(vault_url(v) + "/secrets?" + KV_API, KV)
    return code == 200


def secret_values(vault):
    """(name, version id, value) of every version of every secret of a vault."""
    for s in get_all(vault_url(vault) + "/secrets?" + KV_API, KV) or []:
        name = s["id"].rstrip("/").split("/")[-1]
        for ver in get_all(vault_url(vault) + "/secrets/%s/versions?%s" % (name, KV_API), KV) or []:
            code, d = get(ver["id"] + "?" + KV_API, KV)
            if code == 200 and isinstance(d, dict) and isinstance(d.get("value"), str):
                yield name, ver["id"], d["value"]


def latest_secret(vault, name):
    code, d = get(vault_url(vault) + "/secrets/%s?%s" % (name, KV_API), KV)
    return d if code == 200 else None


def key_versions(vault, name):
    vs = get_all(vault_url(vault) + "/keys/%s/versions?%s" % (name, KV_API), KV)
    return None if vs is None else sorted(v["kid"].rstrip("/").split("/")[-1] for v in vs)


def apps_named(display):
    q = urllib.parse.quote("displayName eq '%s'" % display.replace("'", "''"))
    return get_all(GRAPH + "/v1.0/applications?$filter=" + q, GRAPH) or []


def digest(v):
    return hashlib.sha256(v.encode()).hexdigest()


def snapshot(out, dirs):
    states = [load(d) for d in dirs]
    snap = {"apps": {}, "keyVersions": {}, "generated": {}}
    for s in states:
        for a in s["apps"]:
            for app in apps_named(a["displayName"]):
                ids = snap["apps"].setdefault(a["displayName"], [])
                if app["id"] not in ids:
                    ids.append(app["id"])
        for k in s["keys"]:
            vs = key_versions(k["vault"], k["name"])
            if vs:
                snap["keyVersions"]["%s/%s" % (k["vault"], k["name"])] = vs
        for sec in s["secrets"]:
            if "generate" in sec:
                d = latest_secret(sec["vault"], sec["name"])
                if d and isinstance(d.get("value"), str):
                    snap["generated"]["%s/%s" % (sec["vault"], sec["name"])] = digest(d["value"])
    with open(out, "w") as fh:
        json.dump(snap, fh)
    print("snapshot: %d apps, %d keys, %d generated secrets" % (
        len(snap["apps"]), len(snap["keyVersions"]), len(snap["generated"])))


def check(snap_file, final_dir, other_dirs):
    snap = {"apps": {}, "keyVersions": {}, "generated": {}}
    if os.path.exists(snap_file):
        with open(snap_file) as fh:
            snap = json.load(fh)
    final = load(final_dir)
    others = [load(d) for d in other_dirs]
    states = others + [final]
    results = []

    def ok(cond, msg):
        results.append(("ok  " if cond else "FAIL") + " " + msg)

    code, consumer = curl("https://azsim.localhost:%s/consumer" % PORT)
    ok(code == 200 and consumer.get("unrecoverable") == 0,
       "consumer: unrecoverable data keys %s" % (consumer or {}).get("unrecoverable"))
    ok(code == 200 and consumer.get("unavailable") == 0,
       "consumer: unavailable data keys (a disabled version wraps them) %s" % (consumer or {}).get("unavailable"))

    # apps: one registration and one service principal per display name, nothing orphaned
    vaults = all_vaults(states)
    stored = {}  # credential keyId -> vault/secret of its stored copy
    for v in vaults:
        for s in get_all(vault_url(v) + "/secrets?" + KV_API, KV) or []:
            kid = (s.get("tags") or {}).get(TAG_CREDENTIAL)
            if kid:
                stored[kid] = "%s/%s" % (v, s["id"].rstrip("/").split("/")[-1])
    sps = get_all(GRAPH + "/v1.0/servicePrincipals", GRAPH) or []
    for a in final["apps"]:
        found = apps_named(a["displayName"])
        ok(len(found) == 1, "app '%s': %d registration(s) (want 1)" % (a["displayName"], len(found)))
        for app in found:
            nsp = sum(1 for sp in sps if sp.get("appId") == app["appId"])
            ok(nsp == 1, "app '%s': %d service principal(s) (want 1)" % (a["displayName"], nsp))
            pw = app.get("passwordCredentials") or []
            orphans = [p["keyId"] for p in pw if p["keyId"] not in stored]
            ok(not orphans, "app '%s': every client secret has its stored copy (%d secrets, %d orphans)"
               % (a["displayName"], len(pw), len(orphans)))
            want = sorted("kvr:%s" % c["name"] for c in a.get("credentials") or [])
            have = sorted(p.get("displayName") or "" for p in pw)
            ok(have == want, "app '%s': client secrets %s (want %s)" % (a["displayName"], have, want))
        for old in snap["apps"].get(a["displayName"], []):
            ok(any(app["id"] == old for app in found),
               "app '%s': the registration made first (%s) still exists" % (a["displayName"], old))

    # a vault the final state retires may be gone (soft-deleted, so still recoverable): what it
    # held is then checked only for that
    sub = final["subscription"]
    dv = get_all(ARM + "/subscriptions/%s/providers/Microsoft.KeyVault/deletedVaults?%s" % (sub, ARM_VAULTS), ARM)
    deleted_vaults = {x.get("name") for x in dv or []}
    retired_gone = set()
    for v in final["vaults"]:
        if v.get("retire") and not vault_exists(v["name"]):
            ok(v["name"] in deleted_vaults,
               "vault %s: retired as declared, soft-deleted and recoverable (not purged)" % v["name"])
            retired_gone.add(v["name"])

    # keys: exactly one version per generation the scenario went through, none deleted
    for k in final["keys"]:
        if k["vault"] in retired_gone:
            continue
        ref = "%s/%s" % (k["vault"], k["name"])
        gens = set()
        for s in states:
            gens |= {str(x.get("generation")) for x in s["keys"]
                     if x["vault"] == k["vault"] and x["name"] == k["name"]}
        vs = key_versions(k["vault"], k["name"])
        ok(vs is not None and len(vs) == len(gens),
           "key %s: %s version(s) (want %d, one per generation)" % (ref, None if vs is None else len(vs), len(gens)))
        lost = [v for v in snap["keyVersions"].get(ref, []) if v not in (vs or [])]
        ok(not lost, "key %s: every earlier version still exists (%d lost)" % (ref, len(lost)))

    # nothing the final desired state keeps was deleted
    for v in final["vaults"]:
        if v.get("retire"):
            continue
        code, _ = get(ARM + "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.KeyVault/vaults/%s?%s"
                      % (sub, v["resourceGroup"], v["name"], ARM_VAULTS), ARM)
        ok(code == 200 and v["name"] not in deleted_vaults, "vault %s exists, not deleted (HTTP %d)" % (v["name"], code))
    kept = {}
    for k in final["keys"]:
        kept.setdefault(k["vault"], {"keys": set(), "secrets": set()})["keys"].add(k["name"])
    for s in final["secrets"]:
        kept.setdefault(s["vault"], {"keys": set(), "secrets": set()})["secrets"].add(s["name"])
    for a in final["apps"]:
        for c in a.get("credentials") or []:
            st = c.get("storeIn") or {}
            if st:
                kept.setdefault(st["vault"], {"keys": set(), "secrets": set()})["secrets"].add(st["secret"])
    for v, objs in sorted(kept.items()):
        if v in retired_gone:
            continue
        if not vault_exists(v):
            ok(False, "vault %s answers" % v)
            continue
        live_k = {x["kid"].rstrip("/").split("/")[-1] for x in get_all(vault_url(v) + "/keys?" + KV_API, KV) or []}
        live_s = {x["id"].rstrip("/").split("/")[-1] for x in get_all(vault_url(v) + "/secrets?" + KV_API, KV) or []}
        del_k = {x["kid"].rstrip("/").split("/")[-1] for x in get_all(vault_url(v) + "/deletedkeys?" + KV_API, KV) or []}
        del_s = {x["id"].rstrip("/").split("/")[-1] for x in get_all(vault_url(v) + "/deletedsecrets?" + KV_API, KV) or []}
        miss = sorted((objs["keys"] - live_k) | (objs["keys"] & del_k) | (objs["secrets"] - live_s) | (objs["secrets"] & del_s))
        ok(not miss, "vault %s: every kept key and secret is there, none deleted (%d keys, %d secrets; missing %s)"
           % (v, len(objs["keys"]), len(objs["secrets"]), miss))
    for ref, dg in sorted(snap["generated"].items()):
        v, n = ref.split("/", 1)
        if v in retired_gone or not any(s["vault"] == v and s["name"] == n for s in final["secrets"]):
            continue
        d = latest_secret(v, n)
        ok(d is not None and digest(d.get("value") or "") == dg, "secret %s: generated value unchanged" % ref)

    # profiles: exactly the desired ones, the active one Used
    profiles = get_all(PROF + "/encryptionProfiles?" + PROFILES_API, PROF)
    names = sorted(p["name"] for p in profiles or [])
    want = sorted(p["name"] for p in final["profiles"])
    ok(names == want, "profiles %s (want %s)" % (names, want))
    act = [p for p in profiles or [] if p["name"] == final["active"]]
    ok(len(act) == 1 and act[0].get("status") == "Used",
       "active profile %s is Used (%s)" % (final["active"], act[0].get("status") if act else None))

    # role assignments: no duplicates of (scope, role, principal)
    ras = get_all(ARM + "/subscriptions/%s/providers/Microsoft.Authorization/roleAssignments?%s" % (sub, ARM_ROLES), ARM)
    seen = {}
    for ra in ras or []:
        p = ra.get("properties", {})
        t = (p.get("scope", "").lower(), p.get("roleDefinitionId", "").lower(), p.get("principalId", ""))
        seen[t] = seen.get(t, 0) + 1
    dups = sum(n - 1 for n in seen.values())
    ok(ras is not None and dups == 0, "role assignments: %d, duplicates %d" % (len(ras or []), dups))

    for r in results:
        print(r)


def scan(workdir, dirs):
    states = [load(d) for d in dirs]
    files = []
    for pat in ("out.*", "err.*", "log.*", "*/out.*", "*/err.*", "*/log.*"):
        files += [f for f in glob.glob(os.path.join(workdir, pat)) if os.path.isfile(f)]
    blobs = []
    for f in files:
        with open(f, "rb") as fh:
            blobs.append(fh.read())
    scanned = leaks = 0
    for v in all_vaults(states):
        for _name, _ver, value in secret_values(v):
            if len(value) < 8:
                continue
            scanned += 1
            b = value.encode()
            if any(b in blob for blob in blobs):
                leaks += 1
    status = "ok  " if scanned > 0 and leaks == 0 else "FAIL"
    print("%s no secret value in any output (%d values, %d files scanned, %d leaked)"
          % (status, scanned, len(files), leaks))


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "snapshot":
        snapshot(sys.argv[2], sys.argv[3:])
    elif mode == "check":
        check(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif mode == "scan":
        scan(sys.argv[2], sys.argv[3:])
    else:
        raise SystemExit("usage: estate.py snapshot|check|scan ...")

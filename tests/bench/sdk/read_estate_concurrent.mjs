// The estate read of read_estate.mjs as an expert writes it with the same SDKs: every call that
// does not wait for another's answer is started at once and goes through a pool of at most
// CONCURRENCY calls in flight (the author measured 48), and every client shares one
// credential and one keep-alive HTTPS agent, so connections and their TLS handshakes are reused
// across calls and clients. A vault's calls also go through a pool of its own (PER_VAULT, 6 as
// kvreconcile's per-host limit): without it the shared pool's places all go to one vault's key
// reads at a time, and each vault host gets CONCURRENCY connections used twice each (4 vaults of 50
// keys at 20 ms: 190 TLS connections and 1.3-1.6 s, against 36 and 0.9 s). What still waits: a
// list's next page (its link comes with the page before), a vault's reads (the vault comes from the
// ARM list) and a key's reads (the key comes from its list). One KeyClient and one SecretClient per
// vault, as the SDK requires, made when the vault's reads start. Reads every vault unless told
// fewer. Prints the JSON line of read_estate.mjs plus concurrency, perVault and connections (the
// TLS connections the agent opened).
//
// usage: node read_estate_concurrent.mjs RESOURCE_GROUP [MAX_VAULTS [CONCURRENCY [PER_VAULT]]]
//        (environment: azsim.env, NODE_EXTRA_CA_CERTS=$AZSIM_CA)
import https from "node:https";
import { sdk, KeyClient, SecretClient, count, report } from "./estate_sdk.mjs";

const [rg, maxArg, nArg, perVaultArg] = process.argv.slice(2);
const max = Number(maxArg || "1000000");
const n = Number(nArg || "48");
const perVault = Number(perVaultArg || "6");

let connections = 0;
class CountingAgent extends https.Agent {
  createConnection(...args) {
    connections++;
    return super.createConnection(...args);
  }
}
// the pools bound the sockets in use (n in all, perVault to a vault); idle ones stay open for the
// run, as a long-lived client's would: with a 1 s idle timeout, a vault's sockets closed while its
// calls waited for places in the shared pool, and the 200-vault estate took 11,000-17,000 TLS
// handshakes for 22,600 requests
const agent = new CountingAgent({ keepAlive: true, maxSockets: n });
const { credential, kvm, authz, vaultUrl } = sdk({ agent });

// pool(size): a function run(fn) that calls fn now if fewer than size of its calls are in
// flight, else when one ends, first come first served; a call that ends hands its place straight
// to the next one waiting
function pool(size) {
  const waiting = [];
  let inFlight = 0;
  return (fn) => {
    const go = async () => {
      try {
        return await fn();
      } finally {
        const next = waiting.shift();
        if (next) next();
        else inFlight--;
      }
    };
    if (inFlight < size) {
      inFlight++;
      return go();
    }
    return new Promise((resolve) => waiting.push(resolve)).then(go);
  };
}
const run = pool(n);

// each(list, fn, call): fn on every item of an SDK list as its page arrives, each page fetched
// through call (a pool); resolves when the last page is in and every fn's promise has resolved
async function each(list, fn, call) {
  const pages = list.byPage();
  const started = [];
  for (;;) {
    const page = await call(() => pages.next());
    if (page.done) break;
    for (const item of page.value) started.push(fn(item));
  }
  await Promise.all(started);
}

// one vault: its role assignments (ARM), its keys (each key's latest version and its versions)
// and its secrets' properties, all at once; the vault's own calls also wait for a place in its
// pool, so that the shared pool's places go to many vaults at once rather than to one vault's
// queue of key reads: a vault host gets at most perVault connections, each used many times
function readVault(vault) {
  const url = vaultUrl(vault.name);
  const keys = new KeyClient(url, credential, { agent });
  const secrets = new SecretClient(url, credential, { agent });
  const local = pool(perVault);
  const call = (fn) => local(() => run(fn));
  return Promise.all([
    each(authz.roleAssignments.listForScope(vault.id), () => count.roles++, run),
    each(keys.listPropertiesOfKeys(), (p) => {
      count.keys++;
      return Promise.all([
        call(() => keys.getKey(p.name)),
        each(keys.listPropertiesOfKeyVersions(p.name), () => count.versions++, call),
      ]);
    }, call),
    each(secrets.listPropertiesOfSecrets(), () => count.secrets++, call),
  ]);
}

const t0 = process.hrtime.bigint();
await each(kvm.vaults.listByResourceGroup(rg), (vault) => {
  if (count.vaults >= max) return;
  count.vaults++;
  return readVault(vault);
}, run);
report(t0, { concurrency: n, perVault, connections });

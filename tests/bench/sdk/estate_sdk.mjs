// What the two SDK estate reads (read_estate.mjs, sequential; read_estate_concurrent.mjs, a pool
// of concurrent calls) share, so that they differ only in how they schedule the same reads: the
// way to azsim (its names resolve to loopback, its environment file names the endpoints), one
// credential and the ARM clients built from client options, the counters and the JSON line.
//
// environment: azsim.env, NODE_EXTRA_CA_CERTS=$AZSIM_CA
import dns from "node:dns";

// *.localhost is loopback (RFC 6761) but glibc's resolver does not answer for subdomains of it.
const systemLookup = dns.lookup;
dns.lookup = (host, options, cb) => {
  if (typeof options === "function") [cb, options] = [options, {}];
  if (typeof options === "number") options = { family: options };
  if (!host.endsWith(".localhost") && host !== "localhost") return systemLookup(host, options, cb);
  const loop = { address: "127.0.0.1", family: 4 };
  return process.nextTick(() => (options && options.all ? cb(null, [loop]) : cb(null, loop.address, 4)));
};

// imported after the lookup is in place
const { ClientSecretCredential } = await import("@azure/identity");
const { KeyVaultManagementClient } = await import("@azure/arm-keyvault");
const { AuthorizationManagementClient } = await import("@azure/arm-authorization");
export const { KeyClient } = await import("@azure/keyvault-keys");
export const { SecretClient } = await import("@azure/keyvault-secrets");

// sdk(options): the credential, the ARM clients and each vault's URL; `options` (client and
// pipeline options, e.g. a shared agent) go to the credential and every client, as they should
// to the vault clients the caller makes
export function sdk(options = {}) {
  const e = process.env;
  const credential = new ClientSecretCredential(e.AZURE_TENANT_ID, e.AZURE_CLIENT_ID, e.AZURE_CLIENT_SECRET,
    { ...options, authorityHost: e.AZURE_AUTHORITY_HOST, disableInstanceDiscovery: true });
  const arm = { ...options, endpoint: e.KVR_ARM_ENDPOINT,
    credentialScopes: [`${e.KVR_ARM_ENDPOINT}/.default`] };
  return {
    credential,
    kvm: new KeyVaultManagementClient(credential, e.AZURE_SUBSCRIPTION_ID, arm),
    authz: new AuthorizationManagementClient(credential, e.AZURE_SUBSCRIPTION_ID, arm),
    vaultUrl: (name) => `https://${name}.${e.KVR_VAULT_SUFFIX}`,
  };
}

export const count = { vaults: 0, keys: 0, versions: 0, secrets: 0, roles: 0 };

// report(t0, extra): the JSON line, the counts and the seconds since t0 (process.hrtime.bigint())
export function report(t0, extra = {}) {
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ ...count, seconds, ...extra }));
}

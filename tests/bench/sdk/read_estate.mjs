// The estate read a user would otherwise write with Azure's official JavaScript SDKs, one awaited
// call after another as the SDK samples do: each vault of the resource group (ARM), its role
// assignments, each key with its latest version and its versions, and the secrets' properties.
// It reads what `kvreconcile plan` reads for the same estate, so run against the same azsim the
// two wall times compare like for like (Graph apps and the profile service are left out: a
// handful of requests). Prints one JSON line: {vaults, keys, versions, secrets, roles, seconds}.
//
// usage: node read_estate.mjs RESOURCE_GROUP MAX_VAULTS   (environment: azsim.env,
//        NODE_EXTRA_CA_CERTS=$AZSIM_CA)
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

const { ClientSecretCredential } = await import("@azure/identity");
const { KeyVaultManagementClient } = await import("@azure/arm-keyvault");
const { AuthorizationManagementClient } = await import("@azure/arm-authorization");
const { KeyClient } = await import("@azure/keyvault-keys");
const { SecretClient } = await import("@azure/keyvault-secrets");

const [rg, maxArg] = process.argv.slice(2);
const max = Number(maxArg || "1000000");
const e = process.env;
const credential = new ClientSecretCredential(e.AZURE_TENANT_ID, e.AZURE_CLIENT_ID, e.AZURE_CLIENT_SECRET,
  { authorityHost: e.AZURE_AUTHORITY_HOST, disableInstanceDiscovery: true });
const arm = { endpoint: e.KVR_ARM_ENDPOINT, credentialScopes: [`${e.KVR_ARM_ENDPOINT}/.default`] };
const kvm = new KeyVaultManagementClient(credential, e.AZURE_SUBSCRIPTION_ID, arm);
const authz = new AuthorizationManagementClient(credential, e.AZURE_SUBSCRIPTION_ID, arm);

const count = { vaults: 0, keys: 0, versions: 0, secrets: 0, roles: 0 };
const t0 = process.hrtime.bigint();
for await (const vault of kvm.vaults.listByResourceGroup(rg)) {
  if (count.vaults >= max) break;
  count.vaults++;
  for await (const _ of authz.roleAssignments.listForScope(vault.id)) count.roles++;
  const url = `https://${vault.name}.${e.KVR_VAULT_SUFFIX}`;
  const keys = new KeyClient(url, credential);
  for await (const p of keys.listPropertiesOfKeys()) {
    count.keys++;
    await keys.getKey(p.name);
    for await (const _ of keys.listPropertiesOfKeyVersions(p.name)) count.versions++;
  }
  const secrets = new SecretClient(url, credential);
  for await (const _ of secrets.listPropertiesOfSecrets()) count.secrets++;
}
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
console.log(JSON.stringify({ ...count, seconds }));

// The estate read a user would otherwise write with Azure's official JavaScript SDKs, one awaited
// call after another as the SDK samples do: each vault of the resource group (ARM), its role
// assignments, each key with its latest version and its versions, and the secrets' properties.
// It reads what `kvreconcile plan` reads for the same estate, so run against the same azsim the
// two wall times compare like for like (Graph apps and the profile service are left out: a
// handful of requests). Prints one JSON line: {vaults, keys, versions, secrets, roles, seconds}.
// read_estate_concurrent.mjs makes the same reads through a pool of concurrent calls.
//
// usage: node read_estate.mjs RESOURCE_GROUP MAX_VAULTS   (environment: azsim.env,
//        NODE_EXTRA_CA_CERTS=$AZSIM_CA)
import { sdk, KeyClient, SecretClient, count, report } from "./estate_sdk.mjs";

const [rg, maxArg] = process.argv.slice(2);
const max = Number(maxArg || "1000000");
const { credential, kvm, authz, vaultUrl } = sdk();

const t0 = process.hrtime.bigint();
for await (const vault of kvm.vaults.listByResourceGroup(rg)) {
  if (count.vaults >= max) break;
  count.vaults++;
  for await (const _ of authz.roleAssignments.listForScope(vault.id)) count.roles++;
  const url = vaultUrl(vault.name);
  const keys = new KeyClient(url, credential);
  for await (const p of keys.listPropertiesOfKeys()) {
    count.keys++;
    await keys.getKey(p.name);
    for await (const _ of keys.listPropertiesOfKeyVersions(p.name)) count.versions++;
  }
  const secrets = new SecretClient(url, credential);
  for await (const _ of secrets.listPropertiesOfSecrets()) count.secrets++;
}
report(t0);

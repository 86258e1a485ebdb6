// Conformance of azsim with Azure's official JavaScript SDKs, used unmodified: only the options
// every custom-cloud user sets (authority host, ARM endpoint and scope, no instance discovery).
// Each operation is its own test, so the report says exactly which ones real clients accept.
//
// Run by run.sh, which starts azsim, exports its azsim.env and NODE_EXTRA_CA_CERTS, and stops it.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import dns from "node:dns";
import { randomBytes, randomUUID, createHash, X509Certificate } from "node:crypto";
import { execFileSync } from "node:child_process";
import https from "node:https";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

// Names under .localhost are loopback (RFC 6761); glibc's resolver does not know that, so the
// test process says it: every *.localhost name resolves to 127.0.0.1, nothing else changes.
const realLookup = dns.lookup;
dns.lookup = function (host, options, callback) {
  if (typeof options === "function") { callback = options; options = {}; }
  if (typeof options === "number") options = { family: options };
  if (host === "localhost" || host.endsWith(".localhost")) {
    if (options && options.all) return process.nextTick(callback, null, [{ address: "127.0.0.1", family: 4 }]);
    return process.nextTick(callback, null, "127.0.0.1", 4);
  }
  return realLookup.call(dns, host, options, callback);
};

const { ClientSecretCredential } = await import("@azure/identity");
const { KeyClient, CryptographyClient } = await import("@azure/keyvault-keys");
const { SecretClient } = await import("@azure/keyvault-secrets");
const { CertificateClient } = await import("@azure/keyvault-certificates");
const { KeyVaultManagementClient } = await import("@azure/arm-keyvault");
const { ResourceManagementClient } = await import("@azure/arm-resources");
const { AuthorizationManagementClient } = await import("@azure/arm-authorization");

const env = process.env;
for (const v of ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_AUTHORITY_HOST",
                 "AZURE_SUBSCRIPTION_ID", "KVR_ARM_ENDPOINT", "KVR_VAULT_SUFFIX"])
  if (!env[v]) throw new Error(`${v} is not set: run through run.sh`);

const credential = new ClientSecretCredential(env.AZURE_TENANT_ID, env.AZURE_CLIENT_ID, env.AZURE_CLIENT_SECRET,
  { authorityHost: env.AZURE_AUTHORITY_HOST, disableInstanceDiscovery: true });
// credentialScopes is the option of the AutoRest-generated SDKs, credentials.scopes that of the
// TypeSpec-generated majors (@azure/arm-resources 8, @azure/arm-keyvault 5); each ignores the other.
const armScopes = [`${env.KVR_ARM_ENDPOINT}/.default`];
const armOptions = { endpoint: env.KVR_ARM_ENDPOINT, credentialScopes: armScopes, credentials: { scopes: armScopes } };
const suffix = randomBytes(3).toString("hex");
const vaultName = `conf-${suffix}`;
const rg = `rg-conformance-${suffix}`;
const vaultUrl = `https://${vaultName}.${env.KVR_VAULT_SUFFIX}`;
let keys, secrets;

test("identity: ClientSecretCredential gets an ARM token", async () => {
  const t = await credential.getToken(`${env.KVR_ARM_ENDPOINT}/.default`);
  assert.ok(t.token.split(".").length === 3, "a JWT");
  assert.ok(t.expiresOnTimestamp > Date.now());
});

test("arm-resources: create a resource group", async () => {
  const client = new ResourceManagementClient(credential, env.AZURE_SUBSCRIPTION_ID, armOptions);
  const g = await client.resourceGroups.createOrUpdate(rg, { location: "westeurope" });
  assert.equal(g.name, rg);
});

test("arm-keyvault: create a vault (long-running operation) and get it", async () => {
  const client = new KeyVaultManagementClient(credential, env.AZURE_SUBSCRIPTION_ID, armOptions);
  const v = await client.vaults.beginCreateOrUpdateAndWait(rg, vaultName, {
    location: "westeurope",
    properties: { tenantId: env.AZURE_TENANT_ID, sku: { family: "A", name: "standard" },
                  enableRbacAuthorization: true, enableSoftDelete: true, softDeleteRetentionInDays: 7,
                  enablePurgeProtection: true, accessPolicies: [] },
  });
  assert.equal(v.name, vaultName);
  assert.equal(v.properties.provisioningState, "Succeeded");
  const got = await client.vaults.get(rg, vaultName);
  assert.equal(got.properties.enablePurgeProtection, true);
  assert.ok(got.properties.vaultUri.startsWith(`https://${vaultName}.`));
  keys = new KeyClient(vaultUrl, credential);
  secrets = new SecretClient(vaultUrl, credential);
});

test("arm-keyvault: list vaults by resource group", async () => {
  const client = new KeyVaultManagementClient(credential, env.AZURE_SUBSCRIPTION_ID, armOptions);
  const names = [];
  for await (const v of client.vaults.listByResourceGroup(rg)) names.push(v.name);
  assert.deepEqual(names, [vaultName]);
});

test("arm-authorization: a role assignment on the vault is created, listed and deleted; an unknown principal is PrincipalNotFound", async () => {
  const client = new AuthorizationManagementClient(credential, env.AZURE_SUBSCRIPTION_ID, armOptions);
  const scope = `/subscriptions/${env.AZURE_SUBSCRIPTION_ID}/resourceGroups/${rg}/providers/Microsoft.KeyVault/vaults/${vaultName}`;
  const token = await credential.getToken(`${env.KVR_ARM_ENDPOINT}/.default`);
  const oid = JSON.parse(Buffer.from(token.token.split(".")[1], "base64url").toString()).oid;
  // Key Vault Reader
  const roleDefinitionId = `/subscriptions/${env.AZURE_SUBSCRIPTION_ID}/providers/Microsoft.Authorization/roleDefinitions/21090545-7ca7-4776-b22c-e363652d74d2`;
  const name = randomUUID();
  const ra = await client.roleAssignments.create(scope, name, { roleDefinitionId, principalId: oid, principalType: "ServicePrincipal" });
  assert.equal(ra.name, name);
  assert.equal(ra.principalId, oid);
  assert.equal(ra.scope, scope);
  const names = [];
  for await (const x of client.roleAssignments.listForScope(scope, { filter: "atScope()" })) names.push(x.name);
  assert.ok(names.includes(name), names.join(","));
  await assert.rejects(
    client.roleAssignments.create(scope, randomUUID(), { roleDefinitionId, principalId: randomUUID(), principalType: "ServicePrincipal" }),
    (e) => e.statusCode === 400 && e.code === "PrincipalNotFound");
  await client.roleAssignments.delete(scope, name);
});

test("keyvault-keys: create an RSA key (challenge flow) and get it", async () => {
  const k = await keys.createRsaKey("conf-kek", { keySize: 2048, keyOps: ["wrapKey", "unwrapKey"], tags: { a: "b" } });
  assert.equal(k.name, "conf-kek");
  assert.equal(k.keyType, "RSA");
  const got = await keys.getKey("conf-kek");
  assert.equal(got.properties.version, k.properties.version);
  assert.deepEqual(got.properties.tags, { a: "b" });
});

test("keyvault-keys: list keys and versions", async () => {
  const names = [];
  for await (const p of keys.listPropertiesOfKeys()) names.push(p.name);
  assert.ok(names.includes("conf-kek"));
  let n = 0;
  for await (const _ of keys.listPropertiesOfKeyVersions("conf-kek")) n++;
  assert.equal(n, 1);
});

test("keyvault-keys: rotate, and rotation policy get/update", async () => {
  const before = await keys.getKey("conf-kek");
  const rotated = await keys.rotateKey("conf-kek");
  assert.notEqual(rotated.properties.version, before.properties.version);
  const policy = await keys.updateKeyRotationPolicy("conf-kek", {
    expiresIn: "P90D",
    lifetimeActions: [{ action: "Rotate", timeAfterCreate: "P30D" }, { action: "Notify", timeBeforeExpiry: "P7D" }],
  });
  assert.equal(policy.expiresIn, "P90D");
  const got = await keys.getKeyRotationPolicy("conf-kek");
  assert.equal(got.lifetimeActions.length, 2);
});

test("keyvault-keys: CryptographyClient wrap/unwrap with RSA-OAEP-256 and RSA-OAEP", async () => {
  const k = await keys.getKey("conf-kek");
  const crypto = new CryptographyClient(k, credential);
  const dek = randomBytes(32);
  for (const alg of ["RSA-OAEP-256", "RSA-OAEP"]) {
    const wrapped = await crypto.wrapKey(alg, dek);
    assert.equal(wrapped.keyID, k.id);
    const unwrapped = await crypto.unwrapKey(alg, wrapped.result);
    assert.deepEqual(Buffer.from(unwrapped.result), dek);
  }
});

test("keyvault-secrets: set, get, list", async () => {
  const s = await secrets.setSecret("conf-secret", "conformance-value", { contentType: "text/plain" });
  assert.equal(s.value, "conformance-value");
  const got = await secrets.getSecret("conf-secret");
  assert.equal(got.value, "conformance-value");
  assert.equal(got.properties.contentType, "text/plain");
  const names = [];
  for await (const p of secrets.listPropertiesOfSecrets()) names.push(p.name);
  assert.ok(names.includes("conf-secret"));
});

test("keyvault-secrets: backup, delete (poller), recover (poller), purge refused, restore", async () => {
  const blob = await secrets.backupSecret("conf-secret");
  assert.ok(blob && blob.length > 0);
  const del = await secrets.beginDeleteSecret("conf-secret");
  const deleted = await del.pollUntilDone();
  assert.equal(deleted.name, "conf-secret");
  const rec = await secrets.beginRecoverDeletedSecret("conf-secret");
  const recovered = await rec.pollUntilDone();
  assert.equal(recovered.name, "conf-secret");
  assert.equal((await secrets.getSecret("conf-secret")).value, "conformance-value");
  // restore needs the name free: delete again; under purge protection a purge must be refused
  await (await secrets.beginDeleteSecret("conf-secret")).pollUntilDone();
  await assert.rejects(secrets.purgeDeletedSecret("conf-secret"), (e) => e.statusCode === 403 || e.statusCode === 409 || e.statusCode === 400);
  await assert.rejects(secrets.restoreSecretBackup(blob), (e) => e.statusCode === 409);
  const other = new SecretClient(vaultUrl, credential);
  await other.setSecret("conf-secret-2", "v2");
  const blob2 = await other.backupSecret("conf-secret-2");
  await (await other.beginDeleteSecret("conf-secret-2")).pollUntilDone();
  await assert.rejects(other.restoreSecretBackup(blob2), (e) => e.statusCode === 409);
});

test("keyvault-keys/secrets: backups restore into another vault of the same subscription and geography", async () => {
  const client = new KeyVaultManagementClient(credential, env.AZURE_SUBSCRIPTION_ID, armOptions);
  const second = `conf2-${suffix}`;
  await client.vaults.beginCreateOrUpdateAndWait(rg, second, {
    location: "westeurope",
    properties: { tenantId: env.AZURE_TENANT_ID, sku: { family: "A", name: "standard" },
                  enableRbacAuthorization: true, enableSoftDelete: true, softDeleteRetentionInDays: 7,
                  accessPolicies: [] },
  });
  const url2 = `https://${second}.${env.KVR_VAULT_SUFFIX}`;
  const keyBlob = await keys.backupKey("conf-kek");
  const restored = await new KeyClient(url2, credential).restoreKeyBackup(keyBlob);
  assert.equal(restored.name, "conf-kek");
  // a soft-deleted secret has no backup
  await assert.rejects(secrets.backupSecret("conf-secret-2"), (e) => e.statusCode === 404);
  const s2 = new SecretClient(url2, credential);
  await secrets.setSecret("conf-secret-3", "v3");
  const blob3 = await secrets.backupSecret("conf-secret-3");
  const back = await s2.restoreSecretBackup(blob3);
  assert.equal(back.name, "conf-secret-3");
  assert.equal((await s2.getSecret("conf-secret-3")).value, "v3");
});

// Certificates: a PFX made by the openssl command at test time, imported with CertificateClient;
// its managed secret is read with SecretClient and opened again with openssl.
test("keyvault-certificates: importCertificate (PFX), getCertificate, listPropertiesOfCertificates", async () => {
  const dir = mkdtempSync(join(tmpdir(), "azsim-conf-"));
  try {
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", join(dir, "k.pem"),
      "-out", join(dir, "c.pem"), "-days", "30", "-subj", "/CN=conf-cert"], { stdio: "ignore" });
    execFileSync("openssl", ["pkcs12", "-export", "-inkey", join(dir, "k.pem"), "-in", join(dir, "c.pem"),
      "-passout", "pass:conf-pw", "-out", join(dir, "c.pfx")], { stdio: "ignore" });
    const x509 = new X509Certificate(readFileSync(join(dir, "c.pem")));
    const pfx = readFileSync(join(dir, "c.pfx"));
    const certs = new CertificateClient(vaultUrl, credential);
    const imported = await certs.importCertificate("conf-cert", pfx, { password: "conf-pw", tags: { use: "tls" } });
    assert.equal(imported.name, "conf-cert");
    assert.deepEqual(Buffer.from(imported.cer), x509.raw);
    assert.deepEqual(Buffer.from(imported.properties.x509Thumbprint), createHash("sha1").update(x509.raw).digest());
    assert.equal(imported.policy.subject, "CN=conf-cert");
    assert.equal(imported.policy.contentType, "application/x-pkcs12");
    assert.equal(imported.properties.expiresOn.getTime(), new Date(x509.validTo).getTime());
    const got = await certs.getCertificate("conf-cert");
    assert.equal(got.properties.version, imported.properties.version);
    assert.deepEqual(got.properties.tags, { use: "tls" });
    assert.equal(got.secretId, `${vaultUrl}/secrets/conf-cert/${imported.properties.version}`);
    const names = [];
    for await (const p of certs.listPropertiesOfCertificates()) names.push(p.name);
    assert.deepEqual(names, ["conf-cert"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("keyvault-certificates: the certificate's secret read with SecretClient is its PFX", async () => {
  const certs = new CertificateClient(vaultUrl, credential);
  const cert = await certs.getCertificate("conf-cert");
  const s = await secrets.getSecret("conf-cert");
  assert.equal(s.properties.managed, true);
  assert.equal(s.properties.contentType, "application/x-pkcs12");
  assert.equal(s.properties.version, cert.properties.version);
  assert.equal(s.properties.certificateKeyId, cert.keyId);
  const pem = execFileSync("openssl", ["pkcs12", "-passin", "pass:", "-nodes"], { input: Buffer.from(s.value, "base64") }).toString();
  assert.ok(pem.includes("PRIVATE KEY"), "the PFX holds the private key");
  const inner = new X509Certificate(pem.slice(pem.indexOf("-----BEGIN CERTIFICATE-----")));
  assert.deepEqual(inner.raw, Buffer.from(cert.cer));
  const managedKeys = [];
  for await (const p of keys.listPropertiesOfKeys()) if (p.managed) managedKeys.push(p.name);
  assert.deepEqual(managedKeys, ["conf-cert"]);
});

test("keyvault-certificates: beginDeleteCertificate poller", async () => {
  const certs = new CertificateClient(vaultUrl, credential);
  const poller = await certs.beginDeleteCertificate("conf-cert");
  const deleted = await poller.pollUntilDone();
  assert.equal(deleted.name, "conf-cert");
  assert.equal(deleted.recoveryId, `${vaultUrl}/deletedcertificates/conf-cert`);
  assert.ok(deleted.scheduledPurgeDate > deleted.deletedOn);
  const d = await certs.getDeletedCertificate("conf-cert");
  assert.equal(d.properties.version, deleted.properties.version);
  await assert.rejects(certs.getCertificate("conf-cert"), (e) => e.statusCode === 404 && e.code === "CertificateNotFound");
  await assert.rejects(secrets.getSecret("conf-cert"), (e) => e.statusCode === 404);
});

// azsim's admin API (azsim.localhost, no token): straight to loopback, SNI and Host as azsim's.
function admin(method, path, body) {
  const u = new URL(env.AZSIM_URL);
  return new Promise((resolve, reject) => {
    const req = https.request({ host: "127.0.0.1", port: u.port, path, method, servername: u.hostname,
      headers: { Host: u.host, "Content-Type": "application/json" }, ca: readFileSync(env.AZSIM_CA) }, (res) => {
      let data = "";
      res.on("data", (c) => { data += c; });
      res.on("end", () => resolve({ status: res.statusCode, body: data ? JSON.parse(data) : null }));
    });
    req.on("error", reject);
    if (body) req.write(JSON.stringify(body));
    req.end();
  });
}

test("arm-keyvault: a vault PUT that is a long-running operation (azsim --arm-async) is polled to Succeeded, and a failed one rejects", async () => {
  const client = new KeyVaultManagementClient(credential, env.AZURE_SUBSCRIPTION_ID, armOptions);
  const polls = async () => (await admin("GET", "/stats")).body.requests["arm.operationStatuses.get"] ?? 0;
  const params = {
    location: "westeurope",
    properties: { tenantId: env.AZURE_TENANT_ID, sku: { family: "A", name: "standard" },
                  enableRbacAuthorization: true, softDeleteRetentionInDays: 7, accessPolicies: [] },
  };
  assert.equal((await admin("POST", "/arm/async", { polls: 2 })).status, 200);
  try {
    const before = await polls();
    const name = `conf3-${suffix}`;
    const v = await client.vaults.beginCreateOrUpdateAndWait(rg, name, params);
    assert.equal(v.name, name);
    assert.equal(v.properties.provisioningState, "Succeeded");
    assert.ok((await polls()) - before >= 3, "the SDK followed Azure-AsyncOperation until Succeeded");
    const s = await new SecretClient(`https://${name}.${env.KVR_VAULT_SUFFIX}`, credential).setSecret("after-lro", "x");
    assert.equal(s.name, "after-lro");
    await assert.rejects(client.vaults.beginCreateOrUpdateAndWait(rg, `lrofail-${suffix}`, params),
      (e) => /VaultProvisioningFailed/.test(`${e.code} ${e.message}`));
  } finally {
    await admin("POST", "/arm/async", { polls: 0 });
  }
});

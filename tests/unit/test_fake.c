/*
 * The fake provider itself (providers/fake): operations change its state as Azure would, reads
 * are copies on the service's clock, scripted faults and events happen when the script says,
 * and the log holds exactly what was carried out. The executor's tests (test_apply.c) stand on
 * these properties, so they are checked here, one by one, on a small estate.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "kvr/fake.h"

#define SUB "3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43"
#define SCOPE_V "/subscriptions/" SUB "/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv1"

static const char LIVE[] =
    "{\"now\": 1000000,"
    " \"vaults\": [{\"name\": \"kv1\", \"resourceGroup\": \"rg\", \"location\": \"westeurope\","
    "   \"rbac\": true, \"softDeleteDays\": 7, \"purgeProtection\": true}],"
    " \"keys\": [{\"vault\": \"kv1\", \"name\": \"dek\", \"kty\": \"RSA\", \"size\": 2048,"
    "   \"ops\": [\"wrapKey\", \"unwrapKey\"], \"versions\": [{\"id\": "
    "\"00000000000000000000000000000001\", \"created\": 900000, \"tags\": {\"kvr-generation\": "
    "\"g1\"}}]}],"
    " \"secrets\": [{\"vault\": \"kv1\", \"name\": \"cred-g1\", \"digest\": \"c0ffee01\","
    "   \"tags\": {\"kvr-credential-key-id\": \"11111111-0000-4000-8000-000000000001\"}}],"
    " \"apps\": [{\"displayName\": \"App One\", \"appId\": "
    "\"aaaaaaaa-0000-4000-8000-000000000001\", \"objectId\": "
    "\"bbbbbbbb-0000-4000-8000-000000000001\", \"servicePrincipalId\": "
    "\"cccccccc-0000-4000-8000-000000000001\", \"passwordCredentials\": [{\"keyId\": "
    "\"11111111-0000-4000-8000-000000000001\", \"displayName\": \"kvr:g1\", \"start\": 900000, "
    "\"end\": 2000000}]}],"
    " \"profiles\": [{\"name\": \"p1\", \"vault\": \"kv1\", \"key\": \"dek\", \"keyVersion\": "
    "\"00000000000000000000000000000001\", \"clientId\": "
    "\"aaaaaaaa-0000-4000-8000-000000000001\", \"credential\": \"g1\", \"status\": \"Used\", "
    "\"statusSince\": 900000}]}";

static kvr_marker_key MK; /* all zero: a fixed key, so markers can be computed here */

static kvr_provider *fake_new(void)
{
    kvr_live *l = NULL;
    kvr_provider *p = NULL;
    kvr_error err;
    assert_int_equal(kvr_live_from_json(&l, LIVE, strlen(LIVE), &err), 0);
    assert_int_equal(kvr_fake_provider_new(&p, l, &MK, &err), 0);
    assert_string_equal(p->name, "fake");
    assert_int_equal(p->version, KVR_PROVIDER_VERSION);
    return p;
}

static kvr_live *now_state(kvr_provider *p)
{
    kvr_live *l = NULL;
    kvr_error err;
    assert_int_equal(kvr_fake_live(p, &l, &err), 0);
    return l;
}

static kvr_op key_create_op(void)
{
    static char tag[] = "kvr-generation", value[] = "g2";
    static kvr_tag tags[] = {{tag, value}};
    kvr_op op;
    memset(&op, 0, sizeof(op));
    op.kind = KVR_OP_KEY_CREATE;
    op.u.key.vault = "KV1"; /* names compare without case, as in Azure */
    op.u.key.name = "dek";
    op.u.key.kty = "RSA";
    op.u.key.size = 3072;
    op.u.key.ops = KVR_OP_WRAP | KVR_OP_UNWRAP;
    op.u.key.tags = (kvr_tags){tags, 1};
    op.u.key.set_rotation = true;
    op.u.key.rotation = (kvr_rotation){.set = true, .expires_after = 730 * 86400};
    return op;
}

static kvr_op password_op(void)
{
    kvr_op op;
    memset(&op, 0, sizeof(op));
    op.kind = KVR_OP_PASSWORD_ADD;
    op.u.password.app_object_id = "bbbbbbbb-0000-4000-8000-000000000001";
    op.u.password.app_name = "App One";
    op.u.password.display_name = "kvr:g2";
    op.u.password.end = 3000000;
    op.u.password.store_vault = "kv1";
    op.u.password.store_secret = "cred-g2";
    return op;
}

/* Reads are copies on the service's clock, which a script moves with every read. */
static void test_fake__read_is_a_copy_on_the_clock(void **state)
{
    kvr_provider *p = fake_new();
    kvr_live *a = NULL, *b = NULL;
    kvr_scope scope;
    kvr_error err;
    kvr_fake_counts n;
    (void)state;
    memset(&scope, 0, sizeof(scope));
    assert_int_equal(p->read(p, &a, &scope, &err), 0);
    assert_int_equal(a->now, 1000000); /* no clock script: the fixture's time, standing still */
    a->keys[0].versions[0].enabled = false;
    assert_int_equal(kvr_fake_script(p, "{\"clock\": {\"start\": 5000, \"perRead\": 60}}", &err),
                     0);
    assert_int_equal(p->read(p, &b, &scope, &err), 0);
    assert_true(b->keys[0].versions[0].enabled);
    assert_int_equal(b->now, 5000);
    kvr_live_free(b);
    assert_int_equal(p->read(p, &b, &scope, &err), 0);
    assert_int_equal(b->now, 5060);
    kvr_live_free(b);
    /* a read that fails (the network is gone), and a month passing before the next one */
    assert_int_equal(kvr_fake_script(p,
                                     "[{\"read\": 4, \"fail\": \"reset\"}, {\"read\": 5, "
                                     "\"advance\": 2592000}]",
                                     &err),
                     0);
    assert_int_equal(p->read(p, &b, &scope, &err), KVR_EHTTP);
    assert_null(b);
    assert_int_equal(p->read(p, &b, &scope, &err), 0);
    assert_int_equal(b->now, 5120 + 2592000);
    kvr_fake_counts_get(p, &n);
    assert_int_equal(n.reads, 5);
    kvr_live_free(a);
    kvr_live_free(b);
    kvr_provider_free(p);
}

/* A key create makes a new latest version with the operation's tags and the rotation policy;
   its id is 32 hex digits and the same in every run. */
static void test_fake__key_create_adds_the_latest_version(void **state)
{
    kvr_provider *p = fake_new(), *q = fake_new();
    kvr_op op = key_create_op();
    kvr_live *l, *m;
    kvr_error err;
    const kvr_live_key *k;
    const char *const *lines;
    (void)state;
    assert_int_equal(p->apply(p, &op, &err), 0);
    assert_int_equal(q->apply(q, &op, &err), 0);
    l = now_state(p);
    m = now_state(q);
    k = kvr_live_key_get(l, "kv1", "dek");
    assert_non_null(k);
    assert_int_equal(k->nversions, 2);
    assert_int_equal(strlen(k->versions[1].id), 32);
    assert_int_equal(strspn(k->versions[1].id, "0123456789abcdef"), 32);
    assert_string_equal(k->versions[1].id, kvr_live_key_get(m, "kv1", "dek")->versions[1].id);
    assert_string_equal(kvr_tags_get(&k->versions[1].tags, "kvr-generation"), "g2");
    assert_true(k->versions[1].enabled);
    assert_int_equal(k->versions[1].created, 1000000);
    assert_int_equal(k->size, 3072);
    assert_true(k->has_policy);
    assert_int_equal(k->policy.expires_after, 730 * 86400);
    assert_int_equal(kvr_fake_log(p, &lines), 1);
    assert_non_null(strstr(lines[0], "\"op\":\"keyCreate\""));
    kvr_live_free(l);
    kvr_live_free(m);
    kvr_provider_free(p);
    kvr_provider_free(q);
}

/* A client secret is added and stored in one operation: the stored copy is tagged with the new
   credential's keyId and holds a fresh value. */
static void test_fake__password_add_stores_the_secret(void **state)
{
    kvr_provider *p = fake_new();
    kvr_op op = password_op();
    kvr_live *l;
    kvr_error err;
    const kvr_live_app *a;
    const kvr_live_secret *s;
    (void)state;
    assert_int_equal(p->apply(p, &op, &err), 0);
    l = now_state(p);
    a = kvr_live_app_get(l, "App One");
    assert_int_equal(a->ncreds, 2);
    assert_string_equal(a->creds[1].display_name, "kvr:g2");
    assert_int_equal(a->creds[1].end, 3000000);
    assert_int_equal(a->creds[1].start, 1000000);
    s = kvr_live_secret_get(l, "kv1", "cred-g2");
    assert_non_null(s);
    assert_string_equal(kvr_tags_get(&s->tags, KVR_TAG_CREDENTIAL), a->creds[1].key_id);
    assert_non_null(s->digest);
    assert_int_equal(strlen(s->digest), KVR_MARKER_LEN);
    kvr_live_free(l);

    /* the store fails (no such vault): the password is removed again */
    op.u.password.store_vault = "nope";
    assert_int_equal(p->apply(p, &op, &err), KVR_EAZURE);
    l = now_state(p);
    assert_int_equal(kvr_live_app_get(l, "App One")->ncreds, 2);
    kvr_live_free(l);
    kvr_provider_free(p);
}

/* Another writer's soft delete (a read event): the key is among the deleted ones, and a
   recover brings it back with its versions. */
static void test_fake__another_writer_deletes(void **state)
{
    kvr_provider *p = fake_new();
    kvr_live *l = NULL;
    kvr_scope scope;
    kvr_op op;
    kvr_error err;
    (void)state;
    memset(&scope, 0, sizeof(scope));
    assert_int_equal(kvr_fake_script(p,
                                     "{\"read\": 1, \"delete\": \"key\", \"vault\": \"kv1\", "
                                     "\"name\": \"DEK\"}",
                                     &err),
                     0);
    assert_int_equal(p->read(p, &l, &scope, &err), 0);
    assert_null(kvr_live_key_get(l, "kv1", "dek"));
    assert_int_equal(l->ndeleted, 1);
    assert_string_equal(l->deleted[0].kind, "key");
    assert_int_equal(l->deleted[0].purge_at, 1000000 + 7 * 86400);
    kvr_live_free(l);
    memset(&op, 0, sizeof(op));
    op.kind = KVR_OP_KEY_CREATE; /* the name is held */
    op.u.key.vault = "kv1";
    op.u.key.name = "dek";
    op.u.key.kty = "RSA";
    assert_int_equal(p->apply(p, &op, &err), KVR_ECONFLICT);
    op.kind = KVR_OP_OBJECT_RECOVER;
    op.u.object.collection = KVR_COLL_KEYS;
    op.u.object.vault = "kv1";
    op.u.object.name = "dek";
    assert_int_equal(p->apply(p, &op, &err), 0);
    l = now_state(p);
    assert_int_equal(l->ndeleted, 0);
    assert_int_equal(kvr_live_key_get(l, "kv1", "dek")->nversions, 1);
    kvr_live_free(l);
    kvr_provider_free(p);
}

/* A scripted crash after the first request: the password exists, it is not stored, and the
   caller hears "connection reset"; the log shows the operation (it did its first part). */
static void test_fake__crash_after_first_request(void **state)
{
    kvr_provider *p = fake_new();
    kvr_op op = password_op();
    kvr_live *l;
    kvr_error err;
    const char *const *lines;
    (void)state;
    assert_int_equal(kvr_fake_script(p,
                                     "[{\"kind\": \"passwordAddAndStore\", \"crash\": "
                                     "\"after-first-request\"}]",
                                     &err),
                     0);
    assert_int_equal(p->apply(p, &op, &err), KVR_EHTTP);
    assert_non_null(strstr(err.message, "connection reset"));
    l = now_state(p);
    assert_int_equal(kvr_live_app_get(l, "App One")->ncreds, 2);
    assert_null(kvr_live_secret_get(l, "kv1", "cred-g2"));
    kvr_live_free(l);
    assert_int_equal(kvr_fake_log(p, &lines), 1);
    /* a second try is a retry of the same operation: the crash happened once */
    assert_int_equal(p->apply(p, &op, &err), 0);
    l = now_state(p);
    assert_int_equal(kvr_live_app_get(l, "App One")->ncreds, 3);
    assert_non_null(kvr_live_secret_get(l, "kv1", "cred-g2"));
    kvr_live_free(l);
    kvr_provider_free(p);
}

/* "op 2 answers throttled twice": the second operation fails twice, its retries keep the
   number, the third try succeeds; nothing refused is carried out or logged. */
static void test_fake__throttled_twice_then_done(void **state)
{
    kvr_provider *p = fake_new();
    kvr_op k = key_create_op(), pw = password_op();
    kvr_error err;
    const char *const *lines;
    kvr_live *l;
    (void)state;
    assert_int_equal(kvr_fake_script(p, "{\"op\": 2, \"fail\": \"throttled\", \"times\": 2}", &err),
                     0);
    assert_int_equal(p->apply(p, &pw, &err), 0);
    assert_int_equal(p->apply(p, &k, &err), KVR_ETHROTTLED);
    assert_int_equal(p->apply(p, &k, &err), KVR_ETHROTTLED);
    l = now_state(p);
    assert_int_equal(kvr_live_key_get(l, "kv1", "dek")->nversions, 1);
    kvr_live_free(l);
    assert_int_equal(p->apply(p, &k, &err), 0);
    assert_int_equal(kvr_fake_log(p, &lines), 2);
    assert_non_null(strstr(lines[1], "keyCreate"));
    l = now_state(p);
    assert_int_equal(kvr_live_key_get(l, "kv1", "dek")->nversions, 2);
    kvr_live_free(l);
    kvr_provider_free(p);
}

/* Operations holding a placeholder are refused before anything happens. */
static void test_fake__placeholders_are_refused(void **state)
{
    kvr_provider *p = fake_new();
    kvr_op op = password_op();
    kvr_error err;
    const char *const *lines;
    (void)state;
    op.u.password.app_object_id = KVR_PLAN_NEW_APP;
    assert_int_equal(p->apply(p, &op, &err), KVR_EINVAL);
    assert_int_equal(kvr_fake_log(p, &lines), 0);
    kvr_provider_free(p);
}

/* A deleted vault is soft-deleted (its name held, its objects gone with it) and a recover
   brings it back with its objects. */
static void test_fake__vault_delete_and_recover(void **state)
{
    kvr_provider *p = fake_new();
    kvr_op op;
    kvr_live *l;
    kvr_error err;
    (void)state;
    memset(&op, 0, sizeof(op));
    op.kind = KVR_OP_VAULT_DELETE;
    op.u.vault.ref = (kvr_op_vault_ref){SUB, "rg", "kv1"};
    assert_int_equal(p->apply(p, &op, &err), 0);
    l = now_state(p);
    assert_int_equal(l->nvaults, 0);
    assert_int_equal(l->nkeys, 0);
    assert_int_equal(l->ndeleted_vaults, 1);
    assert_int_equal(l->deleted_vaults[0].purge_at, 1000000 + 7 * 86400);
    assert_true(l->deleted_vaults[0].purge_protection);
    kvr_live_free(l);
    op.kind = KVR_OP_VAULT_PUT; /* the name is held */
    op.u.vault.props.location = "westeurope";
    assert_int_equal(p->apply(p, &op, &err), KVR_ECONFLICT);
    op.kind = KVR_OP_VAULT_RECOVER;
    assert_int_equal(p->apply(p, &op, &err), 0);
    l = now_state(p);
    assert_int_equal(l->nvaults, 1);
    assert_int_equal(l->nkeys, 1);
    assert_int_equal(l->ndeleted_vaults, 0);
    kvr_live_free(l);
    kvr_provider_free(p);
}

/* A profile applied is Applying, the one in use stays Used until the new one is Used (a
   scripted read event), and then is Inactive; a profile in use cannot be deleted. */
static void test_fake__profile_transitions(void **state)
{
    kvr_provider *p = fake_new();
    kvr_op put, apply, del;
    kvr_live *l;
    kvr_scope scope;
    kvr_error err;
    (void)state;
    memset(&scope, 0, sizeof(scope));
    memset(&put, 0, sizeof(put));
    put.kind = KVR_OP_PROFILE_PUT;
    put.u.profile.name = "p2";
    put.u.profile.create = true;
    put.u.profile.client_id = "aaaaaaaa-0000-4000-8000-000000000001";
    put.u.profile.credential = "g1";
    put.u.profile.secret_vault = "kv1";
    put.u.profile.secret_name = "cred-g1";
    put.u.profile.key_vault = "kv1";
    put.u.profile.key_name = "dek";
    put.u.profile.key_version = "00000000000000000000000000000001";
    apply = put;
    apply.kind = KVR_OP_PROFILE_APPLY;
    del = put;
    del.kind = KVR_OP_PROFILE_DELETE;
    del.u.profile.name = "p1";
    assert_int_equal(p->apply(p, &put, &err), 0);
    assert_int_equal(p->apply(p, &put, &err), 0); /* the same create again: 200 */
    put.u.profile.key_version = "00000000000000000000000000000002";
    assert_int_equal(p->apply(p, &put, &err), KVR_ECONFLICT); /* immutable */
    assert_int_equal(p->apply(p, &apply, &err), 0);
    assert_int_equal(p->apply(p, &del, &err), KVR_ECONFLICT); /* p1 is Used */
    assert_int_equal(
        kvr_fake_script(p, "{\"read\": 2, \"profile\": \"p2\", \"status\": \"Used\"}", &err), 0);
    assert_int_equal(p->read(p, &l, &scope, &err), 0);
    assert_int_equal(kvr_live_profile_get(l, "p2")->status, KVR_PROFILE_APPLYING);
    assert_int_equal(kvr_live_profile_get(l, "p1")->status, KVR_PROFILE_USED);
    kvr_live_free(l);
    assert_int_equal(p->read(p, &l, &scope, &err), 0);
    assert_int_equal(kvr_live_profile_get(l, "p2")->status, KVR_PROFILE_USED);
    assert_int_equal(kvr_live_profile_get(l, "p1")->status, KVR_PROFILE_INACTIVE);
    kvr_live_free(l);
    assert_int_equal(p->apply(p, &del, &err), 0);
    l = now_state(p);
    assert_null(kvr_live_profile_get(l, "p1"));
    kvr_live_free(l);
    kvr_provider_free(p);
}

/* The probe: scripted refusals first, then the truth: a role assignment on the vault. */
static void test_fake__probe(void **state)
{
    kvr_provider *p = fake_new();
    kvr_probe pr = {"App One", "aaaaaaaa-0000-4000-8000-000000000001", "kv1", "cred-g1", "kv1",
                    "dek"};
    kvr_op ra;
    kvr_error err;
    kvr_live *l;
    char name[40];
    (void)state;
    assert_int_equal(p->probe(p, &pr, &err), KVR_EFORBIDDEN); /* no grant */
    memset(&ra, 0, sizeof(ra));
    ra.kind = KVR_OP_ROLE_ASSIGN;
    ra.u.role.scope = SCOPE_V;
    ra.u.role.role_id = "E147488A-F6F5-4113-8E2D-B22465E65BF6";
    ra.u.role.principal_id = "cccccccc-0000-4000-8000-000000000001";
    assert_int_equal(p->apply(p, &ra, &err), 0);
    assert_int_equal(p->apply(p, &ra, &err), 0); /* the same name again: idempotent */
    l = now_state(p);
    assert_int_equal(l->nroles, 1);
    assert_string_equal(l->roles[0].role_id, "e147488a-f6f5-4113-8e2d-b22465e65bf6");
    snprintf(name, sizeof(name), "%s", l->roles[0].name);
    assert_int_equal(strlen(name), 36);
    kvr_live_free(l);
    assert_int_equal(kvr_fake_script(p, "{\"probe\": {\"failTimes\": 2}}", &err), 0);
    assert_int_equal(p->probe(p, &pr, &err), KVR_EFORBIDDEN);
    assert_int_equal(p->probe(p, &pr, &err), KVR_EFORBIDDEN);
    assert_int_equal(p->probe(p, &pr, &err), 0);
    ra.u.role.principal_id = "dddddddd-0000-4000-8000-000000000001"; /* nobody */
    assert_int_equal(p->apply(p, &ra, &err), KVR_EAZURE);
    assert_non_null(strstr(err.message, "PrincipalNotFound"));
    kvr_provider_free(p);
}

/* A value from the environment is stored as its marker under the caller's key; a value taken
   from another secret carries that secret's marker. */
static void test_fake__secret_values_are_markers(void **state)
{
    kvr_provider *p = fake_new();
    kvr_op set;
    kvr_error err;
    kvr_live *l;
    char want[KVR_MARKER_LEN + 1];
    (void)state;
    setenv("KVR_TEST_FAKE_VALUE", "hunter2", 1);
    kvr_marker(want, &MK, (const unsigned char *)"hunter2", 7);
    memset(&set, 0, sizeof(set));
    set.kind = KVR_OP_SECRET_SET;
    set.u.secret.vault = "kv1";
    set.u.secret.name = "s";
    set.u.secret.content_type = "text/plain";
    set.u.secret.value.kind = KVR_OP_VALUE_ENV;
    set.u.secret.value.env = "KVR_TEST_FAKE_VALUE";
    assert_int_equal(p->apply(p, &set, &err), 0);
    set.u.secret.value.env = "KVR_TEST_FAKE_UNSET";
    unsetenv("KVR_TEST_FAKE_UNSET");
    assert_int_equal(p->apply(p, &set, &err), KVR_ENOTFOUND);
    set.u.secret.name = "t";
    set.u.secret.value.kind = KVR_OP_VALUE_STORED;
    set.u.secret.value.vault = "kv1";
    set.u.secret.value.secret = "cred-g1";
    assert_int_equal(p->apply(p, &set, &err), 0);
    l = now_state(p);
    assert_string_equal(kvr_live_secret_get(l, "kv1", "s")->digest, want);
    assert_string_equal(kvr_live_secret_get(l, "kv1", "t")->digest, "c0ffee01");
    kvr_live_free(l);
    kvr_provider_free(p);
}

/* A script that does not mean anything is refused, naming the entry. */
static void test_fake__bad_scripts(void **state)
{
    kvr_provider *p = fake_new();
    kvr_error err;
    (void)state;
    assert_int_equal(kvr_fake_script(p, "[{\"op\": 1, \"fail\": \"sometimes\"}]", &err),
                     KVR_EINVAL);
    assert_non_null(strstr(err.message, "entry 0"));
    assert_int_equal(kvr_fake_script(p, "[{}, {\"kind\": \"keyMake\", \"fail\": \"reset\"}]", &err),
                     KVR_EINVAL);
    assert_int_equal(
        kvr_fake_script(p, "{\"read\": 1, \"profile\": \"p1\", \"status\": \"Gone\"}", &err),
        KVR_EINVAL);
    assert_int_equal(kvr_fake_script(p, "{\"op\": 1, \"fail\": \"reset\", \"when\": 2}", &err),
                     KVR_EINVAL);
    assert_int_equal(kvr_fake_script(p, "not json", &err), KVR_EINVAL);
    kvr_provider_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fake__read_is_a_copy_on_the_clock),
        cmocka_unit_test(test_fake__key_create_adds_the_latest_version),
        cmocka_unit_test(test_fake__password_add_stores_the_secret),
        cmocka_unit_test(test_fake__another_writer_deletes),
        cmocka_unit_test(test_fake__crash_after_first_request),
        cmocka_unit_test(test_fake__throttled_twice_then_done),
        cmocka_unit_test(test_fake__placeholders_are_refused),
        cmocka_unit_test(test_fake__vault_delete_and_recover),
        cmocka_unit_test(test_fake__profile_transitions),
        cmocka_unit_test(test_fake__probe),
        cmocka_unit_test(test_fake__secret_values_are_markers),
        cmocka_unit_test(test_fake__bad_scripts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

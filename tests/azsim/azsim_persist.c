/*
 * azsim_persist.c - keeps the simulated estate across restarts and crashes. At start (before
 * the ready line), after every acknowledged mutating request (before its reply goes out) and on
 * a clean shutdown the whole state
 * - tenant and subscription ids, the clock offset, applications with their credentials and tags
 * (the deleted ones apart, under "deletedApps", with their deletion time), service principals,
 * role assignments, resource groups and vaults with every key, secret and certificate version
 * (certificates with their managed keys and secrets) - is written to DIR/state.sealed,
 * sealed with the AES-GCM key of DIR/backup.key because it holds secrets and private keys; startup
 * loads it back, so azsim.env and every identifier stay the same.
 * The file is replaced atomically and durably (azsim_write_file), so a kill -9 loses nothing azsim
 * acknowledged; only what the clock did by itself since the last save.
 * Start time counts (a 200-vault benchmark state is 37 MB, a 2,000-vault one 416 MB): key versions
 * keep their PEM as loaded and parse it on first use (azsim_keyvault.c), the vaults are parsed
 * apart and in threads (below), by the reader's JSON parser (reconciler/providers/azure/
 * jsonparse.c: jansson's trees without jansson's lexer, 40 % less CPU for a 2,000-vault start;
 * only the saved state, which azsim wrote itself, is read this way: requests are jansson's), and
 * the save before the ready line writes nothing when the state it would write is the one just
 * loaded.
 */
#include "azsim.h"
#include "jsonparse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#define STATE_FORMAT 1

/* SHA-256 of the state as loaded, until the first save: that save (the one before the ready line)
 * leaves the file alone when it would write the same bytes, instead of sealing and writing the
 * whole state again. One simulator per process; used under the state lock, like all state. */
static unsigned char loaded_digest[32];
static int loaded_digest_set;

static int sha256(unsigned char out[32], const char *data, size_t len)
{
    unsigned int n = 32;
    return EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) == 1 && n == 32;
}

static char *state_path(azsim_state *st)
{
    return azsim_printf("%s/state.sealed", st->data_dir);
}

static char *pubkey_pem(EVP_PKEY *pkey)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *out = NULL, *data = NULL;
    if (b && PEM_write_bio_PUBKEY(b, pkey) == 1) {
        long n = BIO_get_mem_data(b, &data);
        out = azsim_strndup_bytes(data, (size_t)n);
    }
    BIO_free(b);
    return out;
}

/* the apps of vec (st->apps or st->deleted_apps) */
static json_t *apps_dump(const azsim_vec *vec)
{
    json_t *apps = json_array();
    for (size_t i = 0; i < vec->n; i++) {
        azsim_app *a = vec->items[i];
        json_t *pws = json_array(), *keys = json_array();
        for (size_t k = 0; k < a->passwords.n; k++) {
            azsim_password *pw = a->passwords.items[k];
            json_array_append_new(
                pws, json_pack("{s:s,s:s,s:s?,s:s,s:I,s:I}", "keyId", pw->key_id, "secret",
                               pw->secret, "displayName", pw->display_name, "hint", pw->hint,
                               "start", (json_int_t)pw->start, "end", (json_int_t)pw->end));
        }
        for (size_t k = 0; k < a->keys.n; k++) {
            azsim_keycred *kc = a->keys.items[k];
            char *pem = pubkey_pem(kc->pub);
            char *sha1 = azsim_b64url(kc->sha1, sizeof(kc->sha1));
            char *sha256 = azsim_b64url(kc->sha256, sizeof(kc->sha256));
            json_array_append_new(keys, json_pack("{s:s,s:s?,s:s,s:s,s:s,s:s,s:I,s:I}", "keyId",
                                                  kc->key_id, "displayName", kc->display_name,
                                                  "usage", kc->usage, "pem", pem ? pem : "", "sha1",
                                                  sha1 ? sha1 : "", "sha256", sha256 ? sha256 : "",
                                                  "start", (json_int_t)kc->start, "end",
                                                  (json_int_t)kc->end));
            free(pem);
            free(sha1);
            free(sha256);
        }
        json_t *ja =
            json_pack("{s:s,s:s,s:s,s:s,s:s?,s:I,s:o,s:o,s:o}", "id", a->id, "appId", a->app_id,
                      "displayName", a->display_name, "signInAudience", a->sign_in_audience,
                      "uniqueName", a->unique_name, "created", (json_int_t)a->created, "passwords",
                      pws, "keys", keys, "tags", a->tags ? json_copy(a->tags) : json_array());
        if (ja && a->deleted)
            json_object_set_new(ja, "deleted", json_integer((json_int_t)a->deleted));
        json_array_append_new(apps, ja);
    }
    return apps;
}

int azsim_state_save(azsim_state *st)
{
    int rc = AZSIM_ERR;
    json_t *doc = NULL, *sps = json_array(), *ras = json_array(), *rgs = json_array(),
           *vaults = json_array();
    char *plain = NULL, *sealed = NULL, *path = state_path(st);

    if (!path || !sps || !ras || !rgs || !vaults)
        goto done;
    for (size_t i = 0; i < st->sps.n; i++) {
        azsim_sp *sp = st->sps.items[i];
        json_array_append_new(sps, json_pack("{s:s,s:s,s:s}", "id", sp->id, "appId", sp->app_id,
                                             "displayName", sp->display_name));
    }
    for (size_t i = 0; i < st->assignments.n; i++) {
        azsim_role_assignment *ra = st->assignments.items[i];
        json_array_append_new(
            ras, json_pack("{s:s,s:s,s:s,s:s,s:s,s:s?,s:I,s:I}", "name", ra->name, "scope",
                           ra->scope, "role", ra->role, "principal", ra->principal, "principalType",
                           ra->principal_type, "description", ra->description, "created",
                           (json_int_t)ra->created, "effective", (json_int_t)ra->effective));
    }
    for (size_t i = 0; i < st->rgs.n; i++) {
        azsim_rg *rg = st->rgs.items[i];
        json_array_append_new(rgs, json_pack("{s:s,s:s,s:s,s:O}", "sub", rg->sub, "name", rg->name,
                                             "location", rg->location, "tags", rg->tags));
    }
    for (size_t i = 0; i < st->vaults.n; i++) {
        json_t *v = azsim_vault_dump(st->vaults.items[i]);
        if (!v)
            goto done;
        json_array_append_new(vaults, v);
    }
    /* the deleted apps apart: a binary that predates them drops them rather than revive them */
    doc = json_pack("{s:i,s:s,s:s,s:I,s:s?,s:o,s:o,s:O,s:O,s:O,s:O}", "format", STATE_FORMAT,
                    "tenant", st->tenant, "subscription", st->subscription, "clockOffset",
                    (json_int_t)st->clock_offset, "bootstrap",
                    st->bootstrap ? st->bootstrap->id : NULL, "apps", apps_dump(&st->apps),
                    "deletedApps", apps_dump(&st->deleted_apps), "sps", sps, "assignments", ras,
                    "resourceGroups", rgs, "vaults", vaults);
    if (doc && st->consumer)
        json_object_set_new(doc, "consumer", azsim_consumer_dump(st));
    if (doc)
        json_object_set_new(doc, "dependents", azsim_dependents_dump());
    if (doc && st->seeded) {
        /* a --seed run must not hand out the identifiers of the previous run again */
        char rng[32];
        snprintf(rng, sizeof(rng), "%llu", (unsigned long long)st->rng);
        json_object_set_new(doc, "rng", json_string(rng));
    }
    plain = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    if (plain && loaded_digest_set) {
        unsigned char d[32];
        loaded_digest_set = 0;
        if (sha256(d, plain, strlen(plain)) && CRYPTO_memcmp(d, loaded_digest, 32) == 0) {
            rc = AZSIM_OK; /* what is on disk already */
            goto done;
        }
    }
    sealed = plain ? azsim_seal(st, plain, strlen(plain)) : NULL;
    if (!sealed || azsim_write_file(path, sealed, strlen(sealed), 0600) != AZSIM_OK) {
        fprintf(stderr, "azsim: cannot save the state to '%s'\n", path);
        goto done;
    }
    rc = AZSIM_OK;
done:
    azsim_secret_free(plain);
    free(sealed);
    free(path);
    json_decref(doc);
    json_decref(sps);
    json_decref(ras);
    json_decref(rgs);
    json_decref(vaults);
    return rc;
}

static int copy_id(char *dst, size_t size, json_t *v)
{
    const char *s = json_string_value(v);
    if (!s || strlen(s) >= size)
        return AZSIM_EINVAL;
    memcpy(dst, s, strlen(s) + 1);
    return AZSIM_OK;
}

/*
 * Loads apps into vec: st->apps (deleted 0), or st->deleted_apps (deleted 1: each must carry its
 * deletion time). A state saved before tags existed loads with none.
 */
static int load_apps(azsim_vec *vec, json_t *apps, int deleted)
{
    size_t i;
    json_t *ja;
    json_array_foreach(apps, i, ja)
    {
        azsim_app *a = calloc(1, sizeof(*a));
        if (!a || azsim_vec_push(vec, a) != AZSIM_OK) {
            free(a);
            return AZSIM_ENOMEM;
        }
        if (copy_id(a->id, sizeof(a->id), json_object_get(ja, "id")) != AZSIM_OK ||
            copy_id(a->app_id, sizeof(a->app_id), json_object_get(ja, "appId")) != AZSIM_OK)
            return AZSIM_EINVAL;
        a->display_name = azsim_strdup(json_string_value(json_object_get(ja, "displayName")));
        a->sign_in_audience =
            azsim_strdup(json_string_value(json_object_get(ja, "signInAudience")));
        a->created = json_integer_value(json_object_get(ja, "created"));
        if (!a->display_name || !a->sign_in_audience)
            return AZSIM_EINVAL;
        if (json_is_string(json_object_get(ja, "uniqueName")) &&
            !(a->unique_name = strdup(json_string_value(json_object_get(ja, "uniqueName")))))
            return AZSIM_ENOMEM;
        json_t *tags = json_object_get(ja, "tags");
        size_t t;
        json_t *tag;
        if (tags && !json_is_array(tags))
            return AZSIM_EINVAL;
        json_array_foreach(tags, t, tag)
        {
            if (!json_is_string(tag))
                return AZSIM_EINVAL;
        }
        if (!(a->tags = tags ? json_deep_copy(tags) : json_array()))
            return AZSIM_ENOMEM;
        a->deleted = json_integer_value(json_object_get(ja, "deleted"));
        if (deleted != (a->deleted > 0))
            return AZSIM_EINVAL;
        size_t k;
        json_t *jp;
        json_array_foreach(json_object_get(ja, "passwords"), k, jp)
        {
            azsim_password *pw = calloc(1, sizeof(*pw));
            if (!pw || azsim_vec_push(&a->passwords, pw) != AZSIM_OK) {
                free(pw);
                return AZSIM_ENOMEM;
            }
            pw->secret = azsim_strdup(json_string_value(json_object_get(jp, "secret")));
            pw->display_name = azsim_strdup(json_string_value(json_object_get(jp, "displayName")));
            pw->start = json_integer_value(json_object_get(jp, "start"));
            pw->end = json_integer_value(json_object_get(jp, "end"));
            if (!pw->secret ||
                copy_id(pw->key_id, sizeof(pw->key_id), json_object_get(jp, "keyId")) ||
                copy_id(pw->hint, sizeof(pw->hint), json_object_get(jp, "hint")))
                return AZSIM_EINVAL;
        }
        json_t *jk;
        json_array_foreach(json_object_get(ja, "keys"), k, jk)
        {
            azsim_keycred *kc = calloc(1, sizeof(*kc));
            unsigned char *h1 = NULL, *h2 = NULL;
            size_t l1 = 0, l2 = 0;
            if (!kc || azsim_vec_push(&a->keys, kc) != AZSIM_OK) {
                free(kc);
                return AZSIM_ENOMEM;
            }
            const char *pem = json_string_value(json_object_get(jk, "pem"));
            BIO *b = pem ? BIO_new_mem_buf(pem, -1) : NULL;
            kc->pub = b ? PEM_read_bio_PUBKEY(b, NULL, NULL, NULL) : NULL;
            BIO_free(b);
            kc->usage = azsim_strdup(json_string_value(json_object_get(jk, "usage")));
            kc->display_name = azsim_strdup(json_string_value(json_object_get(jk, "displayName")));
            kc->start = json_integer_value(json_object_get(jk, "start"));
            kc->end = json_integer_value(json_object_get(jk, "end"));
            int ok = kc->pub && kc->usage &&
                     copy_id(kc->key_id, sizeof(kc->key_id), json_object_get(jk, "keyId")) == 0 &&
                     json_is_string(json_object_get(jk, "sha1")) &&
                     json_is_string(json_object_get(jk, "sha256")) &&
                     azsim_b64url_decode(&h1, &l1,
                                         json_string_value(json_object_get(jk, "sha1"))) == 0 &&
                     azsim_b64url_decode(&h2, &l2,
                                         json_string_value(json_object_get(jk, "sha256"))) == 0 &&
                     l1 == sizeof(kc->sha1) && l2 == sizeof(kc->sha256);
            if (ok) {
                memcpy(kc->sha1, h1, l1);
                memcpy(kc->sha256, h2, l2);
            }
            free(h1);
            free(h2);
            if (!ok)
                return AZSIM_EINVAL;
        }
    }
    return AZSIM_OK;
}

/* ---------- the vaults, parsed apart ----------
 * The vaults are nearly all of a large state: 310 MB of its JSON at 2,000 vaults. Parsed as one
 * tree with the rest, that tree took gigabytes and most of a 16-second start. So the state's text
 * is cut where the members of the "vaults" array begin and end, and each vault is parsed, loaded
 * and its tree freed on its own, by a thread per processor. The cutting only finds where values
 * end: jansson parses (and checks) every piece, and the rest of the document as before.
 */

typedef struct {
    const char *text;
    size_t len;
} text_range;

typedef struct {
    text_range *items;
    size_t n, cap;
} vault_texts;

static const char *skip_blank(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* p at a string's opening quote: just past its closing one, or NULL when it has none */
static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end;) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        size_t escapes = 0;
        if (!q)
            return NULL;
        while (q - escapes > p && q[-1 - (ptrdiff_t)escapes] == '\\')
            escapes++;
        if (escapes % 2 == 0) /* not itself escaped */
            return q + 1;
        p = q + 1;
    }
    return NULL;
}

/* p at the start of a value: just past its end, or NULL when it has none */
static const char *skip_value(const char *p, const char *end)
{
    size_t depth = 0;
    if (p == end)
        return NULL;
    if (*p == '"')
        return skip_string(p, end);
    if (*p != '{' && *p != '[') { /* a number, true, false or null */
        while (p < end && !strchr(",}] \t\r\n", *p))
            p++;
        return p;
    }
    while (p < end) {
        if (*p == '"') {
            if (!(p = skip_string(p, end)))
                return NULL;
            continue;
        }
        if (*p == '{' || *p == '[')
            depth++;
        else if ((*p == '}' || *p == ']') && --depth == 0)
            return p + 1;
        p++;
    }
    return NULL;
}

/* The members of the array [p, end) (p at its '['), into texts. */
static int cut_array(vault_texts *texts, const char *p, const char *end)
{
    for (p = skip_blank(p + 1, end); p < end && *p != ']';) {
        const char *v = p;
        if (!(p = skip_value(v, end)) || p == v)
            return AZSIM_EINVAL;
        if (texts->n == texts->cap) {
            size_t cap = texts->cap ? texts->cap * 2 : 64;
            text_range *items = realloc(texts->items, cap * sizeof(*items));
            if (!items)
                return AZSIM_ENOMEM;
            texts->items = items;
            texts->cap = cap;
        }
        texts->items[texts->n++] = (text_range){v, (size_t)(p - v)};
        p = skip_blank(p, end);
        if (p < end && *p == ',')
            p = skip_blank(p + 1, end);
        else if (p < end && *p != ']')
            return AZSIM_EINVAL;
    }
    return p < end ? AZSIM_OK : AZSIM_EINVAL;
}

/*
 * Cuts text, a state document, into the document without its vaults (*out_rest, malloc'd, with
 * the "vaults" member's array left empty) and the text of each vault (into vaults, pointing into
 * text). A document without a "vaults" member is all rest.
 */
static int cut_vaults(char **out_rest, size_t *out_rest_len, vault_texts *vaults, const char *text,
                      size_t len)
{
    const char *end = text + len, *p = skip_blank(text, end), *arr = end, *arr_end = end;
    *out_rest = NULL;
    if (p == end || *p != '{')
        return AZSIM_EINVAL;
    for (p = skip_blank(p + 1, end); p < end && *p != '}';) {
        const char *key = p, *key_end = *p == '"' ? skip_string(p, end) : NULL;
        if (!key_end || (p = skip_blank(key_end, end)) == end || *p != ':')
            return AZSIM_EINVAL;
        const char *v = skip_blank(p + 1, end);
        if (!(p = skip_value(v, end)) || p == v)
            return AZSIM_EINVAL;
        if (key_end - key == 8 && memcmp(key, "\"vaults\"", 8) == 0) {
            if (*v != '[' || arr != end || cut_array(vaults, v, p) != AZSIM_OK)
                return AZSIM_EINVAL;
            arr = v;
            arr_end = p;
        }
        p = skip_blank(p, end);
        if (p < end && *p == ',')
            p = skip_blank(p + 1, end);
    }
    size_t head = (size_t)(arr - text), tail = (size_t)(end - arr_end), empty = arr < end ? 2 : 0;
    char *rest = malloc(head + empty + tail + 1);
    if (!rest)
        return AZSIM_ENOMEM;
    memcpy(rest, text, head);
    memcpy(rest + head, "[]", empty);
    memcpy(rest + head + empty, arr_end, tail);
    rest[head + empty + tail] = '\0';
    *out_rest = rest;
    *out_rest_len = head + empty + tail;
    return AZSIM_OK;
}

/* Loads vaults from their texts in threads, while the thread that started it loads the rest. */
typedef struct {
    const vault_texts *texts;
    azsim_vault **out;
    pthread_mutex_t lock;
    pthread_cond_t idle; /* a thread has run out of vaults */
    size_t started, idle_threads, next;
    int failed;
} vault_loader;

static void *vault_loader_run(void *arg)
{
    vault_loader *l = arg;
    for (;;) {
        pthread_mutex_lock(&l->lock);
        size_t i = l->failed ? l->texts->n : l->next++;
        pthread_mutex_unlock(&l->lock);
        if (i >= l->texts->n)
            return NULL;
        json_t *j = kvr__json_parse(l->texts->items[i].text, l->texts->items[i].len, 0, NULL);
        l->out[i] = j ? azsim_vault_load(j) : NULL;
        json_decref(j);
        if (!l->out[i]) {
            pthread_mutex_lock(&l->lock);
            l->failed = 1;
            pthread_mutex_unlock(&l->lock);
        }
    }
}

/*
 * A loader thread: once out of vaults it says so, and then stays, idle, until azsim exits. glibc
 * gives the arena of a thread that has ended to the next thread that starts; MHD's threads,
 * started next, then made each request's objects in the holes the parse trees left among the
 * loaded vaults, and azsim spent about 20 % more CPU per request of a 200-vault plan
 * (tests/bench/RESULTS.md, K). Kept, the loaders keep their arenas and MHD's threads get their own.
 */
static void *vault_loader_thread(void *arg)
{
    vault_loader *l = arg;
    vault_loader_run(l);
    pthread_mutex_lock(&l->lock);
    l->idle_threads++;
    pthread_cond_signal(&l->idle);
    pthread_mutex_unlock(&l->lock); /* l is not touched again: it goes with load_text */
    for (;;)
        pause(); /* never returns: every thread blocks SIGTERM and SIGINT (azsim_signals_setup) */
    return NULL;
}

/* Starts a thread per processor (at most 8, and no more than there are vaults). */
static int vault_loader_start(vault_loader *l, const vault_texts *texts)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t want = cpus < 1 ? 1 : cpus > 8 ? 8 : (size_t)cpus;
    pthread_t t;
    memset(l, 0, sizeof(*l));
    l->texts = texts;
    if (!(l->out = calloc(texts->n + 1, sizeof(*l->out))))
        return AZSIM_ENOMEM;
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->idle, NULL);
    while (l->started < want && l->started < texts->n &&
           pthread_create(&t, NULL, vault_loader_thread, l) == 0) {
        pthread_detach(t);
        l->started++;
    }
    return AZSIM_OK;
}

/* Waits for the vaults (loading them here when no thread could start) and, when st is not NULL,
 * adds them to st->vaults in their order. Frees what it does not add. */
static int vault_loader_finish(vault_loader *l, azsim_state *st)
{
    int rc = st ? AZSIM_OK : AZSIM_EINVAL;
    if (!l->out)
        return AZSIM_ENOMEM;
    if (st && l->started == 0)
        vault_loader_run(l);
    pthread_mutex_lock(&l->lock);
    if (!st) /* stop early */
        l->failed = 1;
    while (l->idle_threads < l->started)
        pthread_cond_wait(&l->idle, &l->lock);
    pthread_mutex_unlock(&l->lock);
    pthread_cond_destroy(&l->idle);
    pthread_mutex_destroy(&l->lock);
    for (size_t i = 0; i < l->texts->n; i++) {
        if (rc == AZSIM_OK && l->out[i] && azsim_vec_push(&st->vaults, l->out[i]) == AZSIM_OK)
            continue;
        rc = AZSIM_EINVAL;
        azsim_vault_free(l->out[i]);
    }
    free(l->out);
    l->out = NULL;
    return rc;
}

/* doc is the state without its vaults, which `vaults` loads */
static int load_doc(azsim_state *st, json_t *doc, vault_loader *vaults)
{
    size_t i;
    json_t *j;
    if (json_integer_value(json_object_get(doc, "format")) != STATE_FORMAT ||
        copy_id(st->tenant, sizeof(st->tenant), json_object_get(doc, "tenant")) != AZSIM_OK ||
        copy_id(st->subscription, sizeof(st->subscription), json_object_get(doc, "subscription")) !=
            AZSIM_OK)
        return AZSIM_EINVAL;
    st->clock_offset = json_integer_value(json_object_get(doc, "clockOffset"));
    const char *rng = json_string_value(json_object_get(doc, "rng"));
    if (st->seeded && rng)
        st->rng = strtoull(rng, NULL, 10);
    if (load_apps(&st->apps, json_object_get(doc, "apps"), 0) != AZSIM_OK ||
        load_apps(&st->deleted_apps, json_object_get(doc, "deletedApps"), 1) != AZSIM_OK)
        return AZSIM_EINVAL;
    const char *boot = json_string_value(json_object_get(doc, "bootstrap"));
    st->bootstrap = boot ? azsim_app_by_id(st, boot) : NULL;
    json_array_foreach(json_object_get(doc, "sps"), i, j)
    {
        azsim_sp *sp = calloc(1, sizeof(*sp));
        if (!sp || azsim_vec_push(&st->sps, sp) != AZSIM_OK) {
            free(sp);
            return AZSIM_ENOMEM;
        }
        sp->display_name = azsim_strdup(json_string_value(json_object_get(j, "displayName")));
        if (!sp->display_name || copy_id(sp->id, sizeof(sp->id), json_object_get(j, "id")) ||
            copy_id(sp->app_id, sizeof(sp->app_id), json_object_get(j, "appId")))
            return AZSIM_EINVAL;
    }
    json_array_foreach(json_object_get(doc, "assignments"), i, j)
    {
        azsim_role_assignment *ra = NULL;
        const char *name = json_string_value(json_object_get(j, "name"));
        const char *scope = json_string_value(json_object_get(j, "scope"));
        const char *role = json_string_value(json_object_get(j, "role"));
        const char *principal = json_string_value(json_object_get(j, "principal"));
        if (!name || !scope || !role || !principal ||
            azsim_role_assign(&ra, st, name, scope, role, principal,
                              json_string_value(json_object_get(j, "principalType")),
                              json_integer_value(json_object_get(j, "effective"))) != AZSIM_OK)
            return AZSIM_EINVAL;
        ra->created = json_integer_value(json_object_get(j, "created"));
        ra->description = azsim_strdup(json_string_value(json_object_get(j, "description")));
    }
    json_array_foreach(json_object_get(doc, "resourceGroups"), i, j)
    {
        azsim_rg *rg = calloc(1, sizeof(*rg));
        if (!rg || azsim_vec_push(&st->rgs, rg) != AZSIM_OK) {
            free(rg);
            return AZSIM_ENOMEM;
        }
        rg->sub = azsim_strdup(json_string_value(json_object_get(j, "sub")));
        rg->name = azsim_strdup(json_string_value(json_object_get(j, "name")));
        rg->location = azsim_strdup(json_string_value(json_object_get(j, "location")));
        rg->tags = json_deep_copy(json_object_get(j, "tags"));
        if (!rg->sub || !rg->name || !rg->location || !rg->tags)
            return AZSIM_EINVAL;
    }
    if (azsim_dependents_load(json_object_get(doc, "dependents")) != AZSIM_OK)
        return AZSIM_ENOMEM;
    if (vault_loader_finish(vaults, st) != AZSIM_OK)
        return AZSIM_EINVAL;
    if (json_object_get(doc, "consumer") &&
        azsim_consumer_load(st, json_object_get(doc, "consumer")) != AZSIM_OK)
        return AZSIM_EINVAL;
    return AZSIM_OK;
}

/* The state of text (the document azsim_state_save seals) into st; *digest_ok says whether digest
 * holds text's SHA-256. */
static int load_text(azsim_state *st, unsigned char digest[32], int *digest_ok, const char *text,
                     size_t len)
{
    vault_texts texts = {0};
    vault_loader vaults = {0};
    char *rest = NULL;
    size_t rest_len = 0;
    json_t *doc = NULL;
    int rc = cut_vaults(&rest, &rest_len, &texts, text, len);
    if (rc == AZSIM_OK)
        rc = vault_loader_start(&vaults, &texts);
    *digest_ok = rc == AZSIM_OK && sha256(digest, text, len); /* while the vaults load */
    if (rc == AZSIM_OK && !(doc = kvr__json_parse(rest, rest_len, 0, NULL)))
        rc = AZSIM_EINVAL;
    if (rc == AZSIM_OK)
        rc = load_doc(st, doc, &vaults);
    if (vaults.out) /* load_doc did not get as far as the vaults */
        vault_loader_finish(&vaults, NULL);
    json_decref(doc);
    if (rest) {
        OPENSSL_cleanse(rest, rest_len);
        free(rest);
    }
    free(texts.items);
    return rc;
}

/* *out_loaded = 1 when DIR/state.sealed existed and was loaded; a damaged file is an error. */
int azsim_state_load(azsim_state *st, int *out_loaded)
{
    int rc = AZSIM_OK;
    char *path = state_path(st), *sealed = NULL, *plain = NULL;
    size_t plen = 0;
    int digest_ok = 0;
    struct stat sb;

    *out_loaded = 0;
    if (!path)
        return AZSIM_ENOMEM;
    if (stat(path, &sb) != 0 && errno == ENOENT)
        goto done;
    rc = AZSIM_EINVAL;
    if (azsim_read_file(&sealed, NULL, path) == AZSIM_OK &&
        azsim_unseal(&plain, &plen, st, sealed) == AZSIM_OK) {
        free(sealed); /* hundreds of megabytes for a large estate */
        sealed = NULL;
    }
    if (!plain || load_text(st, loaded_digest, &digest_ok, plain, plen) != AZSIM_OK) {
        fprintf(stderr, "azsim: cannot load the saved state '%s' (remove it to start afresh)\n",
                path);
        goto done;
    }
    *out_loaded = 1;
    loaded_digest_set = digest_ok;
    rc = AZSIM_OK;
done:
    if (plain) {
        OPENSSL_cleanse(plain, plen);
        free(plain);
    }
    free(sealed);
    free(path);
    return rc;
}

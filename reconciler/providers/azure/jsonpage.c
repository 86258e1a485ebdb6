/*
 * List pages read item by item. A resource group's role-assignment list is one page of thousands
 * of items (10,000, 10 MB of text, in the 200-vault bench estate), and jansson's tree of a page
 * is larger than its text: parsed whole, that page was 13 MB of the plan's peak. So a page
 * is split instead: a scan of the text finds the members of its top object and the extent of
 * each item of its "value" array, minding strings (quotes, backslash escapes) and the nesting of
 * {} and []; the items are then parsed one slice at a time (into jansson trees, by jsonparse.c)
 * and handed out a few at a time, so that a reader holds the text and one batch, never the
 * page's tree.
 *
 * The splitter only finds boundaries: every byte of every slice is still judged as jansson judges
 * it (jsonparse.c hands jansson whatever it does not take), and the
 * bytes between slices (whitespace, the ':' and ',' and the brackets of the top object and its
 * array) are checked here as RFC 8259 has them. Input it does not expect (a top level that is no
 * object, "value" twice, a structure it cannot follow, nesting deeper than SPLIT_DEPTH) is parsed
 * whole instead, as it always was, so a page that is not JSON gets jansson's own words, and a
 * nesting bomb meets jansson's depth limit: the scan keeps a counter, never a stack, and reads
 * nothing past the length it is given.
 */
#include "jsonpage.h"
#include "jsonparse.h"

#include <stdio.h>
#include <string.h>

#include "kvr/util.h"

/* Containers open at once (the top object and "value" included) that the split path follows;
   an Azure list item nests a handful deep. */
#define SPLIT_DEPTH 512

static size_t skip_ws(const char *s, size_t len, size_t i)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/*
 * One past the closing quote of the string whose opening quote is s[i]; 0 if it does not close
 * within len. A quote closes it unless an odd run of backslashes comes right before it (each
 * backslash escapes the next byte). The quotes are found with memchr: strings are most of a
 * page's bytes, and this is what makes the scan cheap next to jansson's parse.
 */
static size_t string_end(const char *s, size_t len, size_t i)
{
    for (i++; i < len;) {
        const char *q = memchr(s + i, '"', len - i);
        size_t k, b;
        if (!q)
            return 0;
        /* the run of backslashes before it: no escape is pending at i (the string's first byte,
           or the one after an escaped quote), so the run is counted back to i at most */
        for (k = (size_t)(q - s), b = k; b > i && s[b - 1] == '\\'; b--)
            ;
        if ((k - b) % 2 == 0)
            return k + 1;
        i = k + 1;
    }
    return 0;
}

/*
 * One past the end of the value that starts at s[i] (not whitespace), inside `depth` open
 * containers; 0 if it does not end within len, is empty, or nests past SPLIT_DEPTH. Boundaries
 * only: a scalar runs up to the next delimiter, and brackets are counted, not matched (jansson
 * rejects a slice whose brackets do not match).
 */
static size_t value_end(const char *s, size_t len, size_t i, size_t depth)
{
    size_t open = 0, j;
    if (i >= len)
        return 0;
    if (s[i] == '"')
        return string_end(s, len, i);
    if (s[i] != '{' && s[i] != '[') {
        for (j = i; j < len; j++)
            if (s[j] == ',' || s[j] == ']' || s[j] == '}' || s[j] == ' ' || s[j] == '\t' ||
                s[j] == '\n' || s[j] == '\r')
                break;
        return j > i ? j : 0;
    }
    for (j = i; j < len; j++) {
        switch (s[j]) {
        case '"':
            if (!(j = string_end(s, len, j)))
                return 0;
            j--; /* the closing quote; the loop steps past it */
            break;
        case '{':
        case '[':
            if (depth + ++open > SPLIT_DEPTH)
                return 0;
            break;
        case '}':
        case ']':
            if (--open == 0)
                return j + 1;
            break;
        default:
            break;
        }
    }
    return 0;
}

/* The items of the array that opens at s[i]: counts them and notes where the first starts.
   One past the closing bracket, 0 if the array cannot be followed. */
static size_t split_items(kvr__jsonpage *pg, size_t i)
{
    const char *s = pg->text;
    size_t len = pg->len, n = 0;
    i = skip_ws(s, len, i + 1);
    pg->at = i;
    if (i < len && s[i] == ']') {
        pg->nitems = 0;
        return i + 1;
    }
    for (;;) {
        size_t e = value_end(s, len, i, 2);
        if (!e)
            return 0;
        n++;
        i = skip_ws(s, len, e);
        if (i < len && s[i] == ',') {
            i = skip_ws(s, len, i + 1);
        } else if (i < len && s[i] == ']') {
            pg->nitems = n;
            return i + 1;
        } else {
            return 0;
        }
    }
}

/* The top object, member by member. 0: split; -1: to be parsed whole. */
static int split(kvr__jsonpage *pg)
{
    const char *s = pg->text;
    size_t len = pg->len, i = skip_ws(s, len, 0);
    bool seen = false;
    if (i == len || s[i] != '{' || !(pg->rest = json_object()))
        return -1;
    i = skip_ws(s, len, i + 1);
    if (i < len && s[i] == '}')
        return skip_ws(s, len, i + 1) == len ? 0 : -1;
    for (;;) {
        size_t kend, vend = 0;
        json_t *key, *v;
        if (i == len || s[i] != '"' || !(kend = string_end(s, len, i)))
            return -1;
        /* jansson decodes the name: "\u0076alue" is "value" */
        key = kvr__json_parse(s + i, kend - i, JSON_DECODE_ANY, NULL);
        i = skip_ws(s, len, kend);
        if (!json_is_string(key) || i == len || s[i] != ':') {
            json_decref(key);
            return -1;
        }
        i = skip_ws(s, len, i + 1);
        if (strcmp(json_string_value(key), "value") != 0) {
            vend = value_end(s, len, i, 1);
            v = vend ? kvr__json_parse(s + i, vend - i, JSON_DECODE_ANY, NULL) : NULL;
            if (!v || json_object_set_new(pg->rest, json_string_value(key), v) < 0)
                vend = 0;
        } else if (!seen) { /* "value" twice is parsed whole: jansson keeps the last one */
            seen = true;
            if (i < len && s[i] == '[') {
                vend = split_items(pg, i);
                pg->has_value = true;
            } else if ((vend = value_end(s, len, i, 1)) != 0) {
                /* JSON, but no array */
                v = kvr__json_parse(s + i, vend - i, JSON_DECODE_ANY, NULL);
                vend = v ? vend : 0;
                json_decref(v);
            }
        }
        json_decref(key);
        if (!vend)
            return -1;
        i = skip_ws(s, len, vend);
        if (i < len && s[i] == ',')
            i = skip_ws(s, len, i + 1);
        else if (i < len && s[i] == '}')
            return skip_ws(s, len, i + 1) == len ? 0 : -1;
        else
            return -1;
    }
}

static int jansson_code(const json_error_t *e)
{
    return json_error_code(e) == json_error_out_of_memory ? KVR_ENOMEM : KVR_EPROTO;
}

int kvr__jsonpage_open(kvr__jsonpage *pg, const char *text, size_t len, json_error_t *jerr)
{
    json_error_t local;
    const json_t *value;
    memset(pg, 0, sizeof(*pg));
    pg->text = text;
    pg->len = len;
    if (split(pg) == 0)
        return 0;
    json_decref(pg->rest);
    memset(pg, 0, sizeof(*pg));
    pg->text = text;
    pg->len = len;
    if (!(pg->whole = json_loadb(text, len, 0, jerr ? jerr : &local)))
        return jansson_code(jerr ? jerr : &local);
    value = json_object_get(pg->whole, "value");
    pg->rest = json_incref(pg->whole); /* holds "value" too: harmless, next links are looked up */
    pg->has_value = json_is_array(value);
    pg->nitems = json_array_size(value);
    return 0;
}

/* A slice jansson refused: the page's verdict, worded as a parse of the whole text words it
   (that parse fails at the same place, since every byte before the slice passed). */
static int slice_refused(const kvr__jsonpage *pg, json_error_t *jerr)
{
    json_error_t whole;
    json_t *j;
    if (json_error_code(jerr) == json_error_out_of_memory)
        return KVR_ENOMEM;
    if (!(j = json_loadb(pg->text, pg->len, 0, &whole))) {
        *jerr = whole;
        return jansson_code(&whole);
    }
    json_decref(j); /* not reached but by a lack of memory the slice met and the whole did not */
    return KVR_EPROTO;
}

int kvr__jsonpage_next(json_t **out, kvr__jsonpage *pg, size_t max, json_error_t *jerr)
{
    json_error_t local;
    json_t *batch = json_array();
    int rc = 0;
    *out = NULL;
    if (!jerr)
        jerr = &local;
    if (!batch)
        return KVR_ENOMEM;
    for (; !rc && max > 0 && pg->taken < pg->nitems; max--) {
        json_t *it;
        if (pg->whole) {
            it = json_incref(json_array_get(json_object_get(pg->whole, "value"), pg->taken));
        } else {
            /* open followed this very item, so it ends within the text */
            size_t e = value_end(pg->text, pg->len, pg->at, 2);
            if (e <= pg->at || e > pg->len) { /* cannot happen; never a wrapped length */
                json_decref(batch);
                snprintf(jerr->text, sizeof(jerr->text), "a list item could not be delimited");
                return KVR_EPROTO;
            }
            if (!(it = kvr__json_parse(pg->text + pg->at, e - pg->at, JSON_DECODE_ANY, jerr))) {
                rc = slice_refused(pg, jerr);
                break;
            }
            pg->at = skip_ws(pg->text, pg->len, e);
            if (pg->at < pg->len && pg->text[pg->at] == ',')
                pg->at = skip_ws(pg->text, pg->len, pg->at + 1);
        }
        if (json_array_append_new(batch, it) < 0)
            rc = KVR_ENOMEM;
        else
            pg->taken++;
    }
    if (rc < 0) {
        json_decref(batch);
        return rc;
    }
    *out = batch;
    return 0;
}

void kvr__jsonpage_release(kvr__jsonpage *pg)
{
    json_decref(pg->rest);
    json_decref(pg->whole);
    memset(pg, 0, sizeof(*pg));
}

/*
 * Unit tests of the list-page splitter (providers/azure/jsonpage.c): the items of a page are
 * found and parsed one by one, and every page gives what a parse of the whole text gives (the
 * same items and next links, or the same error in jansson's words), whatever the page holds:
 * nesting, brackets and quotes inside strings, escapes, whitespace anywhere, no items, no
 * "value", a truncated or garbled text, a nesting bomb. Texts are copied into buffers of their
 * exact length, so that ASan sees any read past the end. No network is used.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kvr/azure.h"
#include "jsonpage.h"

/* The text in a buffer of exactly its length (no NUL after it). */
static char *exact(const char *text, size_t len)
{
    char *p = malloc(len ? len : 1);
    assert_non_null(p);
    memcpy(p, text, len);
    return p;
}

/* Every item of an open page, `max` at a time; the page's rc (0, or the failing one). */
static int take_all(json_t **out, kvr__jsonpage *pg, size_t max, json_error_t *jerr)
{
    json_t *all = json_array(), *batch = NULL;
    int rc = 0;
    assert_non_null(all);
    do {
        if ((rc = kvr__jsonpage_next(&batch, pg, max, jerr)) < 0)
            break;
        assert_true(json_array_size(batch) <= max);
        assert_int_equal(json_array_extend(all, batch), 0);
        json_decref(batch);
    } while (pg->taken < pg->nitems);
    if (rc < 0) {
        assert_null(batch);
        json_decref(all);
        all = NULL;
    }
    *out = all;
    return rc;
}

/*
 * The page API and json_loadb of the whole text agree on (text, len): both refuse it, in the
 * same words, or both read the same items and the same other members. Returns whether the
 * splitter took the page (not parsed whole).
 */
static bool same_as_whole(const char *text, size_t len, size_t max)
{
    char *buf = exact(text, len);
    json_error_t we, pe;
    json_t *whole = json_loadb(buf, len, 0, &we), *items = NULL, *value;
    kvr__jsonpage pg;
    bool split = false;
    int rc;

    memset(&pe, 0, sizeof(pe));
    rc = kvr__jsonpage_open(&pg, buf, len, &pe);
    if (rc == 0) {
        split = pg.whole == NULL;
        rc = take_all(&items, &pg, max, &pe);
    }
    if (!whole) {
        if (rc != KVR_EPROTO)
            fail_msg("accepted what jansson refuses (%s): '%.*s'", we.text, (int)len, text);
        if (strcmp(pe.text, we.text) != 0)
            fail_msg("error '%s', jansson says '%s': '%.*s'", pe.text, we.text, (int)len, text);
    } else {
        const char *k;
        json_t *v;
        size_t others = 0;
        if (rc != 0)
            fail_msg("refused (%s) what jansson reads: '%.*s'", pe.text, (int)len, text);
        value = json_object_get(whole, "value");
        assert_int_equal(pg.has_value, json_is_array(value));
        if (json_is_array(value) && !json_equal(items, value))
            fail_msg("items differ: '%.*s'", (int)len, text);
        json_object_foreach(whole, k, v)
        {
            if (strcmp(k, "value") == 0)
                continue;
            others++;
            if (!json_equal(json_object_get(pg.rest, k), v))
                fail_msg("member '%s' differs: '%.*s'", k, (int)len, text);
        }
        if (split)
            assert_int_equal(json_object_size(pg.rest), others);
    }
    kvr__jsonpage_release(&pg); /* open leaves it empty when it fails */
    json_decref(items);
    json_decref(whole);
    free(buf);
    return split;
}

static bool same(const char *text)
{
    return same_as_whole(text, strlen(text), 2);
}

/* ---- items -------------------------------------------------------------------------------- */

static void test_jsonpage__items_split(void **state)
{
    static const char page[] =
        "{\"value\":[{\"id\":\"a\",\"properties\":{\"scope\":\"/s/1\",\"n\":[1,[2,[3]],{}]}},"
        "\"str ] } [ { , :\",\"quote \\\" ] and backslash \\\\\",\"\\\\\",\"\\\\\\\"]\","
        "\"\\u005d\\u007b\\ud83d\\ude00 \\u00e9\",[],{},[[]],{\"a\":{\"b\":{\"c\":[]}}},"
        "-1.5e3,0,true,false,null,\"\"],\"nextLink\":null}";
    char *buf = exact(page, sizeof(page) - 1);
    kvr__jsonpage pg;
    json_error_t jerr;
    json_t *items, *whole;
    (void)state;
    assert_int_equal(kvr__jsonpage_open(&pg, buf, sizeof(page) - 1, &jerr), 0);
    assert_null(pg.whole); /* split, not parsed whole */
    assert_true(pg.has_value);
    assert_int_equal(pg.nitems, 16);
    assert_int_equal(take_all(&items, &pg, 1, &jerr), 0);
    assert_int_equal(pg.taken, 16);
    whole = json_loadb(page, sizeof(page) - 1, 0, NULL);
    assert_true(json_equal(items, json_object_get(whole, "value")));
    assert_string_equal(json_string_value(json_array_get(items, 1)), "str ] } [ { , :");
    assert_string_equal(json_string_value(json_array_get(items, 2)), "quote \" ] and backslash \\");
    assert_string_equal(json_string_value(json_array_get(items, 3)), "\\");
    assert_string_equal(json_string_value(json_array_get(items, 4)), "\\\"]");
    assert_string_equal(json_string_value(json_array_get(items, 5)), "]{\xf0\x9f\x98\x80 \xc3\xa9");
    assert_true(json_is_null(json_object_get(pg.rest, "nextLink")));
    json_decref(items);
    json_decref(whole);
    kvr__jsonpage_release(&pg);
    free(buf);
}

static void test_jsonpage__batches(void **state)
{
    char *text = malloc(1000 * 32 + 64), *p = text;
    kvr__jsonpage pg;
    json_error_t jerr;
    json_t *batch;
    size_t sizes[8], n = 0;
    (void)state;
    assert_non_null(text);
    p += sprintf(p, "{\"value\": [");
    for (int i = 0; i < 1000; i++)
        p += sprintf(p, "%s{\"i\": %d, \"s\": \"[%d]\"}", i ? ", " : "", i, i);
    p += sprintf(p, "]}");
    assert_int_equal(kvr__jsonpage_open(&pg, text, (size_t)(p - text), &jerr), 0);
    assert_null(pg.whole);
    assert_int_equal(pg.nitems, 1000);
    while (pg.taken < pg.nitems) {
        assert_int_equal(kvr__jsonpage_next(&batch, &pg, 256, &jerr), 0);
        for (size_t k = 0; k < json_array_size(batch); k++)
            assert_int_equal(json_integer_value(json_object_get(json_array_get(batch, k), "i")),
                             (json_int_t)(n * 256 + k));
        sizes[n++] = json_array_size(batch);
        json_decref(batch);
    }
    assert_int_equal(n, 4);
    assert_int_equal(sizes[0], 256);
    assert_int_equal(sizes[3], 1000 - 3 * 256);
    /* past the end: an empty batch */
    assert_int_equal(kvr__jsonpage_next(&batch, &pg, 256, &jerr), 0);
    assert_int_equal(json_array_size(batch), 0);
    json_decref(batch);
    kvr__jsonpage_release(&pg);
    assert_true(same_as_whole(text, (size_t)(p - text), 256));
    free(text);
}

static void test_jsonpage__whitespace(void **state)
{
    static const char *const pages[] = {
        " \t\r\n{ \t\r\n\"value\" \t\r\n: \t\r\n[ \t\r\n{ \"a\" : [ 1 , 2 ] } \t\r\n, \t\r\n2 "
        "\t\r\n, \t\r\n\"x\" \t\r\n] \t\r\n, \t\r\n\"nextLink\" \t\r\n: \t\r\n\"https://h/p\" "
        "\t\r\n} \t\r\n",
        "{\"value\":[1,2,\"x\"],\"nextLink\":\"https://h/p\"}",
        "{\n  \"value\": [\n    1,\n    2,\n    \"x\"\n  ],\n  \"nextLink\": \"https://h/p\"\n}\n",
        "{\"value\":[1 ,2\t,\r\"x\"\n]}",
        /* not RFC 8259 whitespace: vertical tab, form feed, NBSP */
        "{\"value\":[1,\v2]}",
        "{\"value\":[1,\f2]}",
        ("{\"value\":[1,\xc2\xa0" /* split: \xa02 would be one escape */
         "2]}"),
        "\v{\"value\":[]}",
        "{\"value\":[]}\f",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
        if (!same(pages[i]) && i < 4)
            fail_msg("page %zu was parsed whole", i);
}

static void test_jsonpage__empty_absent_not_array(void **state)
{
    kvr__jsonpage pg;
    json_error_t jerr;
    json_t *batch;
    char *buf;
    (void)state;
    buf = exact("{\"value\":[ ]}", 13);
    assert_int_equal(kvr__jsonpage_open(&pg, buf, 13, &jerr), 0);
    assert_true(pg.has_value);
    assert_int_equal(pg.nitems, 0);
    assert_int_equal(kvr__jsonpage_next(&batch, &pg, 256, &jerr), 0);
    assert_int_equal(json_array_size(batch), 0);
    json_decref(batch);
    kvr__jsonpage_release(&pg);
    free(buf);

    buf = exact("{\"nextLink\":\"https://h/2\"}", 26);
    assert_int_equal(kvr__jsonpage_open(&pg, buf, 26, &jerr), 0);
    assert_null(pg.whole);
    assert_false(pg.has_value);
    assert_int_equal(pg.nitems, 0);
    assert_string_equal(json_string_value(json_object_get(pg.rest, "nextLink")), "https://h/2");
    kvr__jsonpage_release(&pg);
    free(buf);

    assert_true(same("{}"));
    assert_true(same(" { } "));
    assert_true(same("{\"value\":{\"a\":[1,2]}}"));
    assert_true(same("{\"value\":\"[1,2]\"}"));
    assert_true(same("{\"value\":null,\"x\":1}"));
    assert_true(same("{\"value\":5}"));
    assert_true(same("{\"Value\":[1]}")); /* names are case-sensitive */
    same("[1,2]");                        /* an array at the top: parsed whole, no value */
    same("\"value\"");
}

static void test_jsonpage__next_link_either_side(void **state)
{
    static const char *const pages[] = {
        "{\"nextLink\":\"https://h/p?$skiptoken=2\",\"value\":[{\"id\":1}]}",
        "{\"value\":[{\"id\":1}],\"nextLink\":\"https://h/p?$skiptoken=2\"}",
        ("{\"@odata.context\":\"x\",\"value\":[{\"id\":1}],\"@odata.nextLink\":"
         "\"https://h/p?$skiptoken=2\"}"),
        "{\"@odata.nextLink\":\"https://h/p?$skiptoken=2\",\"value\":[{\"id\":1}],\"count\":1}",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++) {
        size_t len = strlen(pages[i]);
        char *buf = exact(pages[i], len), *next = NULL;
        kvr__jsonpage pg;
        json_error_t jerr;
        kvr_error err;
        assert_true(same(pages[i]));
        assert_int_equal(kvr__jsonpage_open(&pg, buf, len, &jerr), 0);
        assert_int_equal(pg.nitems, 1);
        assert_int_equal(kvr_http_next_link(&next, "https://h/p", pg.rest, &err), 0);
        assert_string_equal(next, "https://h/p?$skiptoken=2");
        free(next);
        kvr__jsonpage_release(&pg);
        free(buf);
    }
}

/* ---- the splitter's corners ---------------------------------------------------------------- */

static void test_jsonpage__names_and_duplicates(void **state)
{
    kvr__jsonpage pg;
    json_error_t jerr;
    char *buf;
    (void)state;
    /* a name written with escapes is still "value" */
    assert_true(same("{\"\\u0076alue\":[1,2,3]}"));
    buf = exact("{\"\\u0076alue\":[1,2,3]}", 22);
    assert_int_equal(kvr__jsonpage_open(&pg, buf, 22, &jerr), 0);
    assert_int_equal(pg.nitems, 3);
    kvr__jsonpage_release(&pg);
    free(buf);
    /* twice: the last one, as jansson keeps it */
    assert_false(same("{\"value\":[1],\"value\":[2,3]}"));
    assert_true(same("{\"nextLink\":\"a\",\"value\":[],\"nextLink\":\"b\"}"));
    /* names with brackets and escaped quotes */
    assert_true(same("{\"a]\\\"}\":[\"}\"],\"value\":[\"{\"]}"));
    /* a NUL in a name or a string is jansson's to refuse */
    same("{\"val\\u0000ue\":[1]}");
    same("{\"value\":[\"\\u0000\"]}");
}

/* Runs of backslashes before a quote: an even run leaves the quote closing the string, an odd
   one escapes it. */
static void test_jsonpage__backslash_runs(void **state)
{
    char text[4096], *p;
    (void)state;
    for (int odd = 0; odd < 2; odd++) {
        p = text + sprintf(text, "{\"value\":[");
        for (int k = 0; k < 10; k++) {
            *p++ = k ? ',' : ' ';
            *p++ = '"';
            for (int b = 0; b < 2 * k + odd; b++)
                *p++ = '\\';
            /* odd: an escaped quote, then a bracket and a comma still inside the string */
            p += sprintf(p, odd ? "\"],\"" : "\"");
        }
        p += sprintf(p, "],\"nextLink\":\"\\\\\"}");
        if (!same_as_whole(text, (size_t)(p - text), 3))
            fail_msg("parsed whole: %s", text);
    }
    /* an odd run at the end of the text: the string never closes */
    same("{\"value\":[\"\\\"]}");
    same("{\"value\":[\"\\\\\\\"]}");
    same("{\"value\":[\"\\\\\"]}");
}

static void test_jsonpage__truncated(void **state)
{
    static const char page[] =
        "{ \"value\" : [ {\"id\":\"a\\\"]\",\"p\":{\"s\":[1,2,{\"t\":\"}\"}]}} , \"\\u00e9\\\\\", "
        "-12.5e-3, true, null, [] ], \"nextLink\" : \"https://h/p?x=\\\"]\" }";
    (void)state;
    /* every prefix is refused as the whole parse refuses it; the full text is read */
    for (size_t n = 0; n < sizeof(page) - 1; n++)
        same_as_whole(page, n, 1);
    assert_true(same_as_whole(page, sizeof(page) - 1, 1));
}

static void test_jsonpage__garbage(void **state)
{
    static const char *const pages[] = {
        "",
        "   ",
        "garbage",
        "<html>502 Bad Gateway</html>",
        "{",
        "}",
        "{\"value\"}",
        "{\"value\":}",
        "{\"value\":[}",
        "{\"value\":[1,]}",
        "{\"value\":[,1]}",
        "{\"value\":[1 2]}",
        "{\"value\":[1],}",
        "{,\"value\":[1]}",
        "{\"value\":[1]} x",
        "{\"value\":[1]}{}",
        "{'value':[1]}",
        "{value:[1]}",
        "{\"value\":[tru]}",
        "{\"value\":[truex]}",
        "{\"value\":[01]}",
        "{\"value\":[1,{\"a\":1]}]}",
        "{\"value\":[1,[2}]}",
        "{\"value\":[\"a\\q\"]}",
        "{\"value\":[\"unterminated]}",
        "{\"value\":[\"\\\"]}",
        "{\"value\":[\"tab\there\"]}",
        "{\"value\":[\"\xff\xfe\"]}",
        "{\"value\":[1],\"nextLink\":}",
        "{\"value\":[1],\"nextLink\":\"x\" \"y\"}",
        "{\"value\":[1],\"nextLink\":[}",
        "\xef\xbb\xbf{\"value\":[]}",
        "{\"value\":[1,2,3,4,5,6,7,bad,9]}",
        "{\"value\":[{\"a\":\"b\"},{\"a\":\"b\",}]}",
        "{\"value\":[\"a\":1]}",
        "{\"value\":[\"\\",
        "{\"value\":[\"\\u12\"]}",
        "{\"value\":[1]\"nextLink\":\"x\"}",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
        same_as_whole(pages[i], strlen(pages[i]), 3);
    /* NUL bytes inside the text */
    same_as_whole("{\"value\":[1,\0 2]}", 17, 3);
    same_as_whole("{\"value\":[\"a\0b\"]}", 17, 3);
    same_as_whole("{\"value\":[1]}\0", 14, 3);
}

/* An item that is not JSON in the middle: the items before it come out, then jansson's words. */
static void test_jsonpage__bad_item_midway(void **state)
{
    static const char page[] = "{\"value\":[1,2,{\"a\":[1,2,]},4],\"nextLink\":null}";
    char *buf = exact(page, sizeof(page) - 1);
    kvr__jsonpage pg;
    json_error_t jerr, we;
    json_t *batch = NULL;
    (void)state;
    assert_null(json_loadb(page, sizeof(page) - 1, 0, &we));
    assert_int_equal(kvr__jsonpage_open(&pg, buf, sizeof(page) - 1, &jerr), 0);
    assert_int_equal(pg.nitems, 4);
    assert_int_equal(kvr__jsonpage_next(&batch, &pg, 2, &jerr), 0);
    assert_int_equal(json_array_size(batch), 2);
    json_decref(batch);
    assert_int_equal(kvr__jsonpage_next(&batch, &pg, 2, &jerr), KVR_EPROTO);
    assert_null(batch);
    assert_string_equal(jerr.text, we.text);
    kvr__jsonpage_release(&pg);
    free(buf);
}

static char *nest(const char *head, size_t depth, const char *open, const char *close,
                  const char *tail, size_t *len)
{
    size_t h = strlen(head), o = strlen(open), c = strlen(close), t = strlen(tail);
    char *p = malloc(h + depth * (o + c) + t + 1), *q = p;
    assert_non_null(p);
    memcpy(q, head, h);
    q += h;
    for (size_t i = 0; i < depth; i++, q += o)
        memcpy(q, open, o);
    for (size_t i = 0; i < depth; i++, q += c)
        memcpy(q, close, c);
    memcpy(q, tail, t);
    q += t;
    *len = (size_t)(q - p);
    return p;
}

static void test_jsonpage__nesting_bomb(void **state)
{
    static const size_t depths[] = {1,    10,   500,  509,  510,  511,  512,  513,    2040,
                                    2044, 2045, 2046, 2047, 2048, 2049, 5000, 1000000};
    /* in an item, in a next link, in an object item, and never closed */
    static const struct {
        const char *head, *open, *close, *tail;
    } shapes[] = {
        {"{\"value\":[1,", "[", "]", "]}"},
        {"{\"value\":[],\"nextLink\":", "[", "]", "}"},
        {"{\"value\":[", "{\"a\":", "}", "]}"},
        {"{\"value\":[", "[", "", ""},
    };
    size_t len;
    char *text;
    (void)state;
    for (size_t i = 0; i < sizeof(depths) / sizeof(depths[0]); i++)
        for (size_t k = 0; k < sizeof(shapes) / sizeof(shapes[0]); k++) {
            text = nest(shapes[k].head, depths[i], shapes[k].open, shapes[k].close,
                        shapes[k].tail, &len);
            same_as_whole(text, len, 256);
            free(text);
        }
    /* shallow items split; a bomb is refused in jansson's words */
    text = nest("{\"value\":[", 20, "[", "]", "]}", &len);
    assert_true(same_as_whole(text, len, 256));
    free(text);
    text = nest("{\"value\":[", 1000000, "[", "]", "]}", &len);
    {
        char *buf = exact(text, len);
        kvr__jsonpage pg;
        json_error_t jerr;
        assert_int_equal(kvr__jsonpage_open(&pg, buf, len, &jerr), KVR_EPROTO);
        assert_non_null(strstr(jerr.text, "depth"));
        free(buf);
    }
    free(text);
}

/* Deterministic mutations of a page (bytes flipped, dropped, doubled): always what the whole
   parse says. */
static void test_jsonpage__mutations(void **state)
{
    static const char page[] =
        "{\"value\":[{\"id\":\"/s/1/r/a\",\"name\":\"a\",\"properties\":{\"roleDefinitionId\":"
        "\"/p/d/1\",\"principalId\":\"p1\",\"scope\":\"/s/1\",\"n\":[1,2.5,-3e2,true,null]}},"
        "{\"id\":\"b\\\"\\\\\",\"x\":[[],{},[{}]],\"u\":\"\\u00e9\\ud83d\\ude00\"}],"
        "\"nextLink\":\"https://h/p?t=\\\"]}\"}";
    static const char alphabet[] = "{}[]\",:\\ \t\nu0a-.e";
    size_t n = sizeof(page) - 1;
    char *text = malloc(n + 1);
    uint32_t seed = 12345;
    (void)state;
    assert_non_null(text);
    for (int round = 0; round < 20000; round++) {
        size_t len = n, at;
        memcpy(text, page, n);
        for (int k = 0; k < 1 + round % 3; k++) {
            seed = seed * 1103515245u + 12345u;
            at = (seed >> 8) % len;
            switch ((seed >> 4) % 3) {
            case 0: /* replace */
                text[at] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
                break;
            case 1: /* drop */
                memmove(text + at, text + at + 1, len - at - 1);
                len--;
                break;
            default: /* double */
                if (len < n + 1) {
                    memmove(text + at + 1, text + at, len - at);
                    len++;
                }
                break;
            }
        }
        same_as_whole(text, len, 1 + round % 4);
    }
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jsonpage__items_split),
        cmocka_unit_test(test_jsonpage__batches),
        cmocka_unit_test(test_jsonpage__whitespace),
        cmocka_unit_test(test_jsonpage__empty_absent_not_array),
        cmocka_unit_test(test_jsonpage__next_link_either_side),
        cmocka_unit_test(test_jsonpage__names_and_duplicates),
        cmocka_unit_test(test_jsonpage__backslash_runs),
        cmocka_unit_test(test_jsonpage__truncated),
        cmocka_unit_test(test_jsonpage__garbage),
        cmocka_unit_test(test_jsonpage__bad_item_midway),
        cmocka_unit_test(test_jsonpage__nesting_bomb),
        cmocka_unit_test(test_jsonpage__mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

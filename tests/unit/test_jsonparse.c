/*
 * Unit tests of the fast JSON parser (providers/azure/jsonparse.c), with jansson as the oracle:
 * for every text, kvr__json_parse must give what json_loadb gives: the same tree, members in the
 * same order (compared as compact dumps, which keep the order), or NULL and jansson's own error;
 * and its fast path alone (kvr__json_parse_fast) must take only what jansson takes, and build
 * the same. Hand-picked texts cover each rule the fast path checks (UTF-8, escapes, surrogates,
 * control characters, numbers, literals, nesting, what may follow a value), and the valid ones
 * must take the fast path (or the comparison would only test jansson against itself); then
 * 30,000 texts made by mutating Azure-shaped documents byte by byte (a fixed seed) are checked
 * the same way. Texts are copied into buffers of their exact length, so that ASan sees any read
 * past the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jsonparse.h"

enum { REFUSED, JANSSON, FAST }; /* what same_as_jansson found: not JSON, or which path took it */

/* Parses text (len bytes) every way; fails the test on any difference. */
static int same_as_jansson(const char *text, size_t len, size_t flags)
{
    char *buf = malloc(len ? len : 1);
    json_error_t want_err, got_err;
    json_t *want, *got, *fast;
    int ok;
    assert_non_null(buf);
    memcpy(buf, text, len);
    want = json_loadb(buf, len, flags, &want_err);
    got = kvr__json_parse(buf, len, flags, &got_err);
    fast = kvr__json_parse_fast(buf, len, flags);
    if (fast) {
        char *w = want ? json_dumps(want, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        char *f = json_dumps(fast, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!w || !f || strcmp(w, f) != 0)
            fail_msg("'%.*s': the fast path gives %s, jansson %s", (int)len, text, f,
                     w ? w : want_err.text);
        free(w);
        free(f);
        json_decref(fast);
    }
    if (!want) {
        if (got || strcmp(want_err.text, got_err.text) != 0 || want_err.line != got_err.line ||
            want_err.column != got_err.column)
            fail_msg("'%.*s': jansson refuses it (%s), the fast parser gave %s", (int)len, text,
                     want_err.text, got ? "a tree" : got_err.text);
        ok = REFUSED;
    } else {
        char *w = json_dumps(want, JSON_COMPACT | JSON_ENCODE_ANY);
        char *g = got ? json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        if (!g || strcmp(w, g) != 0 || !json_equal(want, got))
            fail_msg("'%.*s': jansson gives %s, the fast parser %s", (int)len, text, w,
                     g ? g : got_err.text);
        free(w);
        free(g);
        ok = fast ? FAST : JANSSON;
    }
    json_decref(want);
    json_decref(got);
    free(buf);
    return ok;
}

static int check(const char *text, size_t flags)
{
    return same_as_jansson(text, strlen(text), flags);
}

static void test_valid(void **state)
{
    static const char *const texts[] = {
        "{}",
        "[]",
        " \t\r\n{ } \n",
        "{\"value\":[{\"id\":\"https://kv1.vault.azure.net/secrets/s1\",\"attributes\":{\"enabled\""
        ":true,\"created\":1764892800,\"updated\":1764892800,\"recoveryLevel\":\"Recoverable\"},"
        "\"tags\":{\"kvr-generation\":\"2026-11-01\"},\"contentType\":\"text/plain\"}],"
        "\"nextLink\":null}",
        "[1,-1,0,-0,9223372036854775807,-9223372036854775808,123456789]",
        "[true,false,null,[],{},[[]],{\"a\":{}}]",
        "{\"a\":1,\"b\":2,\"a\":3}",               /* a repeated name: first place, last value */
        "{\"\":\"\",\"x\":\"\"}",                  /* empty name and value */
        "[\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"]", /* every short escape */
        "[\"\\u0041\\u00e9\\u20AC\\uFFFF\\ud83d\\udd11\"]",      /* \u escapes, a surrogate pair */
        "{\"k\\u0065y\":\"v\\u0061lue\",\"n\\\"q\":[\"\\\\\"]}", /* escaped names, reused buffer */
        "[\"caf\xc3\xa9\",\"\xe2\x82\xac\",\"\xf0\x9f\x94\x91\",\"\xef\xbf\xbf\",\"\xf4\x8f\xbf\xbf\"]",
        "[\"\x7f\"]", /* DEL is no control character to JSON */
    };
    /* valid, but left to jansson */
    static const char *const reals[] = {"[0.5,1e3,-2.5E-3,1.0]", "{\"a\":-0.0}"};
    (void)state;
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        if (check(texts[i], 0) != FAST)
            fail_msg("'%s' did not take the fast path", texts[i]);
    for (size_t i = 0; i < sizeof(reals) / sizeof(reals[0]); i++)
        assert_int_equal(check(reals[i], 0), JANSSON);
}

static void test_invalid(void **state)
{
    static const char *const texts[] = {
        "",
        " ",
        "{",
        "}",
        "[",
        "]",
        "{]",
        "[}",
        "[1,]",
        "[,1]",
        "{\"a\":1,}",
        "{\"a\"}",
        "{\"a\" 1}",
        "{a:1}",
        "{1:1}",
        "[1 2]",
        "[\"a\" \"b\"]",
        "{}{}",
        "[] x",
        "[01]",
        "[-]",
        "[-01]",
        "[+1]",
        "[.5]",
        "[1.]",
        "[1e]",
        "[0x10]",
        "[tru]",
        "[truex]",
        "[true1]",
        "[nul]",
        "[nulll]",
        "[False]",
        "[\"abc]",
        "[\"\\\"]",
        "[\"\\x\"]",
        "[\"\\u12\"]",
        "[\"\\u12g4\"]",
        "[\"\\u0000\"]",
        "{\"\\u0000\":1}",
        "[\"\\ud800\"]",
        "[\"\\udc00\"]",
        "[\"\\ud800\\u0041\"]",
        "[\"\\ud800x\"]",
        "[\"\\ud83d\\ud83d\"]",
        "[\"a\tb\"]",
        "[\"a\nb\"]",
        "[\"\x01\"]",
        "[\"\xc0\xaf\"]",
        "[\"\xe0\x80\xaf\"]",
        "[\"\xed\xa0\x80\"]",
        "[\"\xf4\x90\x80\x80\"]",
        "[\"\xf5\x80\x80\x80\"]",
        "[\"\x80\"]",
        "[\"\xc3\"]",
        "[\"\xe2\x82\"]",
        "[\"\xf0\x9f\x94\"]",
        "[\"\xc3\x28\"]",
        "\xef\xbb\xbf{}",
        "[\x80]",
        "\"top\"",
        "1",
        "true",
        "null", /* no container at the top (flags 0) */
        "[99999999999999999999]",
        "[9223372036854775808]",
        "[-9223372036854775809]",
        "[18446744073709551616]",
        "[1e400]",
        "[\"\\n\x1f\"]",
        "[\"\\t\x01x\"]",
        "[\"\\n\xc0\xaf\"]",
        "[\"\\n\xed\xa0\x80\"]",
        "[\"\\n\xf4\x90\x80\x80\"]",
        "[\"\\n\xe0\x80\xaf\"]",
        "[\"\xf0\x8f\xbf\xbf\"]",
        "[\"\\n\xf0\x8f\xbf\xbf\"]",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        check(texts[i], 0);
    /* a NUL byte, inside and outside a string */
    same_as_jansson("[\"a\0b\"]", 7, 0);
    same_as_jansson("[1]\0", 4, 0);
    same_as_jansson("[\0]", 3, 0);
}

static void test_decode_any(void **state)
{
    static const char *const texts[] = {
        "\"top\"", " 1 ", "-0", "true", "false", "null", "\"\\u00e9\"", "{\"a\":[1,{\"b\":\"c\"}]}",
    };
    static const char *const others[] = {"1.5", "", "tru", "1 2", "\"a\" x"};
    (void)state;
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        assert_int_equal(check(texts[i], JSON_DECODE_ANY), FAST);
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
        assert_int_not_equal(check(others[i], JSON_DECODE_ANY), FAST);
}

/* Nesting past what the fast path follows goes to jansson, and so does a nesting bomb. */
static void test_depth(void **state)
{
    char text[2 * 3000 + 1];
    (void)state;
    for (size_t depth = 1; depth <= 3000; depth = depth < 80 ? depth + 1 : depth * 2) {
        memset(text, '[', depth);
        memset(text + depth, ']', depth);
        same_as_jansson(text, 2 * depth, 0);
        memset(text, '[', depth); /* unclosed */
        same_as_jansson(text, depth, 0);
    }
}

/* A long string with escapes across the decode buffer's moves, as a secret's value may be. */
static void test_long_escaped(void **state)
{
    size_t n = 200000;
    char *text = malloc(n + 16);
    (void)state;
    assert_non_null(text);
    memcpy(text, "[\"", 2);
    for (size_t i = 0; i < n; i++)
        text[2 + i] = "ab\\n\xc3\xa9"[i % 6 == 3 ? 0 : i % 6]; /* never a lone backslash */
    for (size_t i = 2; i < n + 2; i++)
        if (text[i] == '\\' && text[i + 1] != 'n')
            text[i] = 'x';
    memcpy(text + 2 + n, "\"]", 2);
    same_as_jansson(text, n + 4, 0);
    free(text);
}

/* Documents shaped like Azure's answers, each mutated byte by byte with a fixed seed: every
   mutant must read as jansson reads it. */
static void test_mutants(void **state)
{
    static const char *const seeds[] = {
        "{\"value\":[{\"kid\":\"https://kv1.vault.azure.net/keys/k1/0123abcd\",\"attributes\":{"
        "\"enabled\":true,\"nbf\":1700000000,\"exp\":1900000000,\"created\":1764892800,"
        "\"updated\":1764892800,\"recoveryLevel\":\"Recoverable+Purgeable\",\"recoverableDays\":"
        "90,\"exportable\":false},\"tags\":{\"kvr-superseded\":\"2026-11-01\",\"x\":\"\\u00e9\\\"\"}"
        ",\"managed\":true}],\"nextLink\":\"https://kv1.vault.azure.net/keys?$skiptoken=25\"}",
        "{\"key\":{\"kid\":\"https://kv1.vault.azure.net/keys/k1/v1\",\"kty\":\"RSA\",\"n\":\"0vx7"
        "agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
        "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Q"
        "vzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQF"
        "h6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw\",\"e\":\"AQAB"
        "\",\"key_ops\":[\"wrapKey\",\"unwrapKey\"]},\"attributes\":{\"enabled\":true}}",
        "{\"value\":[{\"properties\":{\"roleDefinitionId\":\"/subscriptions/s/providers/Microsoft."
        "Authorization/roleDefinitions/12338af0\",\"principalId\":\"3f8a1e52\",\"principalType\":"
        "\"ServicePrincipal\",\"scope\":\"/subscriptions/s/resourceGroups/rg\",\"condition\":null,"
        "\"description\":\"caf\xc3\xa9 \xf0\x9f\x94\x91\"},\"id\":\"/subscriptions/s/x\",\"name\":"
        "\"g\"}],\"@odata.nextLink\":null,\"n\":[0,-1,12,1.5]}",
    };
    static const char alphabet[] = "{}[]\":,\\ \t\n0123456789-+.eEtrufalsn\x01\x7f\x80\xbf\xc3"
                                   "\xe2\xed\xf0\xf4\xff/bu";
    uint64_t rng = 0x2545F4914F6CDD1DULL;
    size_t valid = 0, fast = 0, total = 0;
    char text[1200];
    (void)state;
    for (size_t s = 0; s < sizeof(seeds) / sizeof(seeds[0]); s++) {
        size_t len = strlen(seeds[s]);
        assert_true(len < sizeof(text));
        for (int m = 0; m < 10000; m++) {
            size_t n = len;
            memcpy(text, seeds[s], len);
            for (int k = 0; k < 1 + m % 3; k++) {
                size_t at;
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                at = (size_t)(rng % n);
                switch ((rng >> 32) % 3) {
                case 0: /* replace a byte */
                    text[at] = alphabet[(rng >> 40) % (sizeof(alphabet) - 1)];
                    break;
                case 1: /* drop a byte */
                    memmove(text + at, text + at + 1, n - at - 1);
                    n--;
                    break;
                default: /* insert one */
                    if (n + 1 < sizeof(text)) {
                        memmove(text + at + 1, text + at, n - at);
                        text[at] = alphabet[(rng >> 40) % (sizeof(alphabet) - 1)];
                        n++;
                    }
                }
            }
            switch (same_as_jansson(text, n, 0)) {
            case FAST:
                fast++;
                /* fall through */
            case JANSSON:
                valid++;
                break;
            default:
                break;
            }
            total++;
        }
    }
    /* enough of the mutants stay JSON for the comparison to mean something, and most of those
       take the fast path (the third seed holds a real number: never) */
    print_message("%zu mutants: %zu JSON, %zu of them by the fast path\n", total, valid, fast);
    assert_true(valid > total / 20);
    assert_true(fast > valid / 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_decode_any),   cmocka_unit_test(test_depth),
        cmocka_unit_test(test_long_escaped), cmocka_unit_test(test_mutants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

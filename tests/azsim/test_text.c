/*
 * azsim_text (azsim_util.c) against jansson: each piece written as text must be the bytes
 * json_dumps(JSON_COMPACT) gives for the same value, since azsim's Key Vault replies switched from
 * dumped trees to text and clients saw the dumped bytes before.
 */
#include "azsim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

static void same(const azsim_text *t, json_t *want, const char *what)
{
    char *w = json_dumps(want, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!w || t->failed || !t->p || strcmp(t->p, w) != 0 || t->len != strlen(w)) {
        fprintf(stderr, "FAIL %s:\n  text  %s\n  json  %s\n", what, t->p ? t->p : "(none)",
                w ? w : "(none)");
        failures++;
    }
    free(w);
    json_decref(want);
}

static void check_str(const char *s, const char *what)
{
    azsim_text t = {0};
    azsim_text_str(&t, s);
    same(&t, json_string(s), what);
    azsim_text_release(&t);
}

int main(void)
{
    char one[2] = {0, 0}, name[32];
    static const int64_t ints[] = {0, 1, -1, 90, 1700000000, INT64_MAX, INT64_MIN};
    azsim_text t = {0};
    json_t *tags;
    char *big;

    /* every byte that is one character alone: the escapes and the bytes kept as they are */
    for (int c = 1; c < 0x80; c++) {
        one[0] = (char)c;
        snprintf(name, sizeof(name), "byte 0x%02x", c);
        check_str(one, name);
    }
    check_str("", "empty string");
    check_str("text/pl\"ain\\ \x01\t\x1f\x7f", "mixed escapes");
    check_str("caf\xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x94\x91", "UTF-8 of 2, 3 and 4 bytes, U+2028");
    check_str("https://kv-b000.vault.localhost:4443/secrets/s-0001/0123456789abcdef", "a URL");

    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        azsim_text_int(&t, ints[i]);
        snprintf(name, sizeof(name), "integer %zu", i);
        same(&t, json_integer(ints[i]), name);
        azsim_text_release(&t);
    }

    /* a value written whole, and pieces around it */
    tags = json_pack("{s:s,s:s}", "a\"b", "c\\d", "e", "\x07");
    AZSIM_TEXT_LIT(&t, "{\"tags\":");
    azsim_text_json(&t, tags);
    json_decref(tags);
    AZSIM_TEXT_LIT(&t, ",\"n\":");
    azsim_text_int(&t, 7);
    AZSIM_TEXT_LIT(&t, "}");
    same(&t, json_pack("{s:{s:s,s:s},s:i}", "tags", "a\"b", "c\\d", "e", "\x07", "n", 7),
         "object of pieces");
    azsim_text_release(&t);

    /* a text that grows many times over its first block, with escapes across the moves */
    if (!(big = malloc(100001)))
        return 1;
    for (size_t i = 0; i < 100000; i++)
        big[i] = "ab\"c\\\n"[i % 6];
    big[100000] = '\0';
    check_str(big, "a string of 100,000 bytes");
    free(big);

    if (failures)
        fprintf(stderr, "%d failed\n", failures);
    else
        printf("azsim_text: all checks passed\n");
    return failures != 0;
}

/*
 * Positioned diagnostics. The loader reports every problem it finds, not just the first, in
 * the "FILE:LINE:COL: error: message" form that editors and CI annotators understand. Problems
 * are collected here, sorted by position, and printed once at the end.
 */
#include "kvr/util.h"

#include <stdlib.h>
#include <string.h>

#define DIAGS_DEFAULT_LIMIT 1000

void kvr_diags_init(kvr_diags *d)
{
    memset(d, 0, sizeof(*d));
}

void kvr_diags_addv(kvr_diags *d, const char *file, unsigned line, unsigned col, const char *fmt,
                    va_list ap)
{
    size_t limit = d->limit ? d->limit : DIAGS_DEFAULT_LIMIT;
    char msg[1024];
    kvr_diag *it;

    if (d->len >= limit) {
        d->dropped++;
        return;
    }
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (kvr_grow((void **)&d->items, &d->cap, d->len + 1, sizeof(*d->items)) < 0) {
        d->oom = true;
        return;
    }
    it = &d->items[d->len];
    it->file = strdup(file ? file : "-");
    it->msg = strdup(msg);
    if (!it->file || !it->msg) {
        free(it->file);
        free(it->msg);
        d->oom = true;
        return;
    }
    it->line = line;
    it->col = col;
    d->len++;
}

void kvr_diags_add(kvr_diags *d, const char *file, unsigned line, unsigned col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kvr_diags_addv(d, file, line, col, fmt, ap);
    va_end(ap);
}

static int diag_cmp(const kvr_diag *a, const kvr_diag *b)
{
    int c = strcmp(a->file, b->file);
    if (c)
        return c;
    if (a->line != b->line)
        return a->line < b->line ? -1 : 1;
    if (a->col != b->col)
        return a->col < b->col ? -1 : 1;
    return 0;
}

void kvr_diags_sort(kvr_diags *d)
{
    /* Insertion sort: stable, and lists are short. */
    for (size_t i = 1; i < d->len; i++) {
        kvr_diag tmp = d->items[i];
        size_t j = i;
        while (j > 0 && diag_cmp(&d->items[j - 1], &tmp) > 0) {
            d->items[j] = d->items[j - 1];
            j--;
        }
        d->items[j] = tmp;
    }
}

void kvr_diags_print(const kvr_diags *d, FILE *out)
{
    for (size_t i = 0; i < d->len; i++) {
        const kvr_diag *it = &d->items[i];
        if (it->line)
            fprintf(out, "%s:%u:%u: error: %s\n", it->file, it->line, it->col, it->msg);
        else
            fprintf(out, "%s: error: %s\n", it->file, it->msg);
    }
    if (d->dropped)
        fprintf(out, "error: %zu more errors not shown\n", d->dropped);
    if (d->oom)
        fprintf(out, "error: out of memory while recording errors; some are not shown\n");
}

void kvr_diags_release(kvr_diags *d)
{
    for (size_t i = 0; i < d->len; i++) {
        free(d->items[i].file);
        free(d->items[i].msg);
    }
    free(d->items);
    kvr_diags_init(d);
}

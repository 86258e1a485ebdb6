/*
 * A page of an Azure list read item by item (jsonpage.c). Internal to reconciler/providers/azure.
 */
#ifndef KVR_JSONPAGE_H
#define KVR_JSONPAGE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/*
 * A list page, `{"value": [ITEM, ...], "nextLink": ..., ...}`, whose items are parsed a few at a
 * time (kvr__jsonpage_next) instead of as one tree. Zero-initialise, or let kvr__jsonpage_open
 * fill it; kvr__jsonpage_release frees what it holds (the text stays the caller's and must live
 * as long as the page).
 */
typedef struct kvr__jsonpage {
    json_t *rest;   /* the page's members other than "value" (its next links): the page's
                       reference, borrowed by callers */
    bool has_value; /* "value" is an array */
    size_t nitems;  /* its length */
    size_t taken;   /* items handed out so far */
    /* private */
    const char *text;
    size_t len;
    size_t at;     /* the next item's first byte */
    json_t *whole; /* the page parsed whole: what the splitter does not take (a top level that is
                      no object, "value" twice, nesting deeper than any Azure item), so that
                      jansson has the last word on such input */
} kvr__jsonpage;

/*
 * Opens the page `text` (len bytes; borrowed, kept until release). Finds each member of the top
 * object and the extent of each item of "value" without parsing the items; the other members are
 * parsed into pg->rest. 0 when the page is JSON as far as can be told before its items are
 * parsed; KVR_EPROTO when it is not, with jerr saying why as json_loadb of the whole text says
 * it; KVR_ENOMEM. On failure the page holds nothing.
 */
int kvr__jsonpage_open(kvr__jsonpage *pg, const char *text, size_t len, json_error_t *jerr);

/*
 * The next items of the page, at most `max` (> 0), as a new array (the caller's; an empty one
 * when every item was taken). KVR_EPROTO when one of them is not JSON (jerr as for open: the
 * items taken before it were good), KVR_ENOMEM; *out stays NULL then.
 */
int kvr__jsonpage_next(json_t **out, kvr__jsonpage *pg, size_t max, json_error_t *jerr);

void kvr__jsonpage_release(kvr__jsonpage *pg);

#endif

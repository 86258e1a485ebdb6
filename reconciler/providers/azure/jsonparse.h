/*
 * JSON text to a jansson tree, faster than json_loadb (jsonparse.c). Internal to
 * reconciler/providers/azure; azsim compiles jsonparse.c too, for reading its saved state, so it
 * uses nothing but jansson, OpenSSL and libc.
 */
#ifndef KVR_JSONPARSE_H
#define KVR_JSONPARSE_H

#include <stddef.h>

#include <jansson.h>

/*
 * json_loadb(text, len, flags, jerr) for flags 0 or JSON_DECODE_ANY: the same tree (the same
 * members in the same order, the same values), or NULL with jansson's own error in jerr (may be
 * NULL). Input the fast path does not take (any error, a real number, an integer out of range,
 * nesting deeper than it follows) goes to json_loadb itself, so jansson has the last word on
 * everything but well-formed JSON.
 */
json_t *kvr__json_parse(const char *text, size_t len, size_t flags, json_error_t *jerr);

/* The fast path alone: the tree, or NULL where kvr__json_parse hands the text to json_loadb. */
json_t *kvr__json_parse_fast(const char *text, size_t len, size_t flags);

#endif

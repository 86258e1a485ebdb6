/*
 * Internal to the providers (prov_read.c, prov_write.c): the API versions they speak and the
 * formatting helper both use.
 */
#ifndef KVR_PROV_INTERNAL_H
#define KVR_PROV_INTERNAL_H

#include "kvr/util.h"

#define ARM_VAULTS_API "2024-11-01"
#define ARM_RG_API "2021-04-01"
#define ARM_ROLES_API "2022-04-01"
#define ARM_SUBS_API "2022-12-01"
#define KV_API "7.5"
#define PROFILES_API "2026-01-01"

/* kvr_asprintf that records KVR_ENOMEM in err when it fails. */
char *prov_fmt(kvr_error *err, const char *f, ...) __attribute__((format(printf, 2, 3)));

#endif

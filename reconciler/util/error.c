/*
 * Error codes and the error record. Every fallible function in libkvr returns one of the
 * numbered codes and may describe the failure in a caller-owned kvr_error, in the curl and
 * libgit2 manner: the code is for programs, the message for people.
 */
#include "kvr/util.h"

#include <stdio.h>

const char *kvr_strerror(int code)
{
    switch ((kvr_code)code) {
    case KVR_OK:
        return "success";
    case KVR_ENOMEM:
        return "out of memory";
    case KVR_EINVAL:
        return "invalid argument";
    case KVR_EIO:
        return "input/output error";
    case KVR_ECONFIG:
        return "invalid desired state";
    case KVR_ENOTFOUND:
        return "not found";
    case KVR_ERANGE:
        return "value out of range";
    case KVR_ETOOBIG:
        return "input too large";
    case KVR_ESTALE:
        return "stale plan";
    case KVR_EHTTP:
        return "network error";
    case KVR_ETIMEOUT:
        return "timed out";
    case KVR_EAZURE:
        return "azure returned an error";
    case KVR_EAUTH:
        return "authentication failed";
    case KVR_EFORBIDDEN:
        return "forbidden";
    case KVR_ECONFLICT:
        return "conflict";
    case KVR_ETHROTTLED:
        return "throttled";
    case KVR_EINSECURE:
        return "refused as insecure";
    case KVR_EPROTO:
        return "unexpected response";
    }
    return "unknown error";
}

int kvr_error_oom(kvr_error *err)
{
    return kvr_error_set(err, KVR_ENOMEM, "out of memory");
}

int kvr_error_set(kvr_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
    }
    return code;
}

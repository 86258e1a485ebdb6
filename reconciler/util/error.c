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
    }
    return "unknown error";
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

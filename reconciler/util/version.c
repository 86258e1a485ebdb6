/* The version string, set by the build from the project version. */
#include "kvr/version.h"

#ifndef KVR_VERSION_STRING
#define KVR_VERSION_STRING "unknown"
#endif

const char *kvr_version(void)
{
    return KVR_VERSION_STRING;
}

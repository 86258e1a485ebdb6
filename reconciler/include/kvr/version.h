/* The version of libkvr and the kvreconcile tool. */
#ifndef KVR_VERSION_H
#define KVR_VERSION_H

const char *kvr_version(void);

#endif

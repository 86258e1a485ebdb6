/*
 * libFuzzer target for the desired-state loader: any bytes must give either an estate or
 * positioned diagnostics, never a crash, a hang, a leak or unbounded memory.
 */
#include <stddef.h>
#include <stdint.h>

#include "kvr/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kvr_estate *e = NULL;
    kvr_diags d;
    int rc;

    kvr_diags_init(&d);
    rc = kvr_model_load_buffer(&e, "fuzz.yaml", (const char *)data, size, &d);
    /* The contract: success gives an estate and no diagnostics; failure the reverse. */
    if ((rc == 0) != (e != NULL) || (rc == 0 && d.len != 0) || (rc != 0 && d.len == 0))
        __builtin_trap();
    kvr_estate_free(e);
    kvr_diags_release(&d);
    return 0;
}

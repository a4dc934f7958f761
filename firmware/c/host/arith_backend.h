/* A model backend for host builds and tests: runs the "arithmetic fake kmodel" (layout in
 * firmware/c/README.md) instead of a network, so the protocol loop can be checked without a K210.
 * Outputs: uint8 [n] = (x * mul + add) mod 256, float32 [1] = sum of the input bytes. */
#ifndef ARITH_BACKEND_H
#define ARITH_BACKEND_H

#include <stdint.h>

#include "../core/runner.h"

#define ARITH_HEADER_LEN 20u

typedef struct {
    uint8_t *store; /* LOAD_MODEL / boot model bytes */
    uint32_t store_cap;
    uint8_t *out0; /* output 0, as long as the biggest input */
    uint32_t out0_cap;
    uint8_t sum_le[4]; /* output 1: float32, little-endian */
    uint64_t (*now_us)(void);
    int loaded;
    uint8_t mul, add;
    uint32_t input_len;
} arith_backend_t;

/* Fill *b with the callbacks, versions {3, 4, 5} and name "c-host-arith". */
void arith_backend_init(k210w_backend_t *b, arith_backend_t *a);

#endif

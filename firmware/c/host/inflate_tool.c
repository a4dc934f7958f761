/* inflate_tool: a zlib stream on stdin, the inflated bytes on stdout; exit status = -error (0: ok).
 * For tests/test_sample_cache.py, which holds core/inflate.c to Python's zlib. */
#include <stdio.h>
#include <stdlib.h>

#include "../core/inflate.h"

#define CAP (1u << 22)

int main(void)
{
    static uint8_t src[CAP], dst[CAP];
    size_t n = fread(src, 1, sizeof src, stdin);
    size_t out = 0;
    int err = k210_zlib_inflate(src, n, dst, CAP, &out);
    if (err != K210_INFLATE_OK)
        return -err;
    fwrite(dst, 1, out, stdout);
    return 0;
}

#include "cobs.h"

#include <string.h>

size_t k210w_cobs_encode(const uint8_t *src, size_t n, uint8_t *dst)
{
    size_t code_at = 0, out = 1, i;
    uint8_t code = 1;
    for (i = 0; i < n; i++) {
        if (src[i] == 0) {
            dst[code_at] = code;
            code_at = out++;
            code = 1;
            continue;
        }
        dst[out++] = src[i];
        if (++code == 0xFF) {
            dst[code_at] = code;
            if (i + 1 == n)
                return out; /* data ended on a full block */
            code_at = out++;
            code = 1;
        }
    }
    dst[code_at] = code;
    return out;
}

long k210w_cobs_decode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap)
{
    size_t i = 0, out = 0;
    while (i < n) {
        size_t run;
        uint8_t code = src[i++];
        if (code == 0)
            return K210W_COBS_MALFORMED;
        run = (size_t)code - 1u;
        if (run > n - i)
            return K210W_COBS_MALFORMED;
        if (run > cap - out)
            return K210W_COBS_TOO_LONG;
        memcpy(dst + out, src + i, run);
        out += run;
        i += run;
        if (code != 0xFF && i < n) {
            if (out >= cap)
                return K210W_COBS_TOO_LONG;
            dst[out++] = 0;
        }
    }
    return (long)out;
}

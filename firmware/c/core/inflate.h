/* inflate: a zlib stream (RFC 1950 around RFC 1951 DEFLATE) into a caller's buffer, for the C runner's
 * ZLIB-mode inputs (PROTOCOL.md 4.1). Whole-buffer only (the runner holds the stream and the tensor), no
 * allocation, no recursion; the Adler-32 trailer is checked, so a damaged stream never passes. */
#ifndef K210_INFLATE_H
#define K210_INFLATE_H

#include <stddef.h>
#include <stdint.h>

enum {
    K210_INFLATE_OK = 0,
    K210_INFLATE_TRUNCATED = -1, /* the stream ends early */
    K210_INFLATE_BAD_HEADER = -2, /* not a zlib header (method 8, window <= 32 KiB, no preset dictionary) */
    K210_INFLATE_BAD_BLOCK = -3,  /* a reserved block type, stored length check, bad code lengths or symbols */
    K210_INFLATE_BAD_DISTANCE = -4, /* a match reaching before the output's start */
    K210_INFLATE_TOO_BIG = -5,     /* the output does not fit `cap` */
    K210_INFLATE_BAD_CHECKSUM = -6 /* the Adler-32 of the output differs from the trailer */
};

/* Inflates src[0..n) into dst[0..cap); on K210_INFLATE_OK *out_len holds the output's size. */
int k210_zlib_inflate(const uint8_t *src, size_t n, uint8_t *dst, size_t cap, size_t *out_len);

uint32_t k210_adler32(const uint8_t *data, size_t n);

#endif

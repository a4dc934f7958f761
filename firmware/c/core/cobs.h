/* COBS (Cheshire & Baker 1999). The encoder matches the examples on Wikipedia: a run of 254
 * non-zero bytes that ends the data gets no trailing code byte. */
#ifndef K210W_COBS_H
#define K210W_COBS_H

#include <stddef.h>
#include <stdint.h>

/* Largest encoding of n bytes, without the 0x00 delimiter. */
#define K210W_COBS_MAX(n) ((n) + (n) / 254u + 1u)

#define K210W_COBS_MALFORMED (-1L)
#define K210W_COBS_TOO_LONG (-2L)

/* Encode src[0..n) into dst (room for K210W_COBS_MAX(n)); returns the encoded length. */
size_t k210w_cobs_encode(const uint8_t *src, size_t n, uint8_t *dst);

/* Decode src[0..n) (no delimiter) into dst[0..cap); returns the length, K210W_COBS_MALFORMED
 * or K210W_COBS_TOO_LONG. */
long k210w_cobs_decode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap);

#endif

/* SHA-256 (FIPS 180-4), for checking an uploaded kmodel against LOAD_BEGIN's hash. */
#ifndef K210W_SHA256_H
#define K210W_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t state[8];
    uint64_t length; /* bytes hashed so far */
    uint8_t block[64];
    size_t fill;
} k210w_sha256_t;

void k210w_sha256_init(k210w_sha256_t *s);
void k210w_sha256_update(k210w_sha256_t *s, const uint8_t *data, size_t len);
void k210w_sha256_final(k210w_sha256_t *s, uint8_t digest[32]);
void k210w_sha256(const uint8_t *data, size_t len, uint8_t digest[32]);

#endif

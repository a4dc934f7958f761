/* inflate.c: written from RFC 1950/1951 for this project (see inflate.h).
 *
 * Huffman codes are canonical (RFC 1951 3.2.2), so a code table is just how many codes each length
 * has and the symbols sorted by (length, value); decoding reads one bit at a time and walks the
 * lengths, keeping the first code of each length. Slower than table lookups, but a few hundred bytes
 * of code and under 1 KiB of stack, and the K210 inflates a 49 KB tensor in milliseconds either way. */
#include "inflate.h"

#include <string.h>

#define MAX_BITS 15
#define MAX_LIT 288
#define MAX_DIST 30

typedef struct {
    const uint8_t *src;
    size_t n, pos;
    uint32_t bitbuf;
    int bitcnt;
    uint8_t *dst;
    size_t cap, out;
} reader_t;

typedef struct {
    uint16_t count[MAX_BITS + 1]; /* codes of each length */
    uint16_t symbol[MAX_LIT];     /* symbols ordered by code */
} huffman_t;

static const uint16_t LEN_BASE[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                      31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t LEN_EXTRA[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t DIST_BASE[30] = {1,   2,   3,   4,   5,   7,    9,    13,   17,   25,   33,   49,   65,    97,    129,
                                       193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const uint8_t DIST_EXTRA[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
static const uint8_t CL_ORDER[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

/* n bits, least significant first (RFC 1951 3.1.1); -1 when the input ends. */
static int32_t bits(reader_t *r, int n)
{
    while (r->bitcnt < n) {
        if (r->pos >= r->n)
            return -1;
        r->bitbuf |= (uint32_t)r->src[r->pos++] << r->bitcnt;
        r->bitcnt += 8;
    }
    int32_t v = (int32_t)(r->bitbuf & ((1u << n) - 1u));
    r->bitbuf >>= n;
    r->bitcnt -= n;
    return v;
}

/* Builds the canonical code for lengths[0..n); 0 if usable (complete, or a single code), else -1. */
static int build(huffman_t *h, const uint8_t *lengths, int n)
{
    uint16_t offs[MAX_BITS + 1];
    memset(h->count, 0, sizeof h->count);
    for (int s = 0; s < n; s++)
        h->count[lengths[s]]++;
    if (h->count[0] == n)
        return 0; /* no codes at all: only valid if never used (a distance-less block) */
    int left = 1; /* codes still available at this length */
    for (int len = 1; len <= MAX_BITS; len++) {
        left <<= 1;
        left -= h->count[len];
        if (left < 0)
            return -1; /* over-subscribed */
    }
    offs[1] = 0;
    for (int len = 1; len < MAX_BITS; len++)
        offs[len + 1] = (uint16_t)(offs[len] + h->count[len]);
    for (int s = 0; s < n; s++)
        if (lengths[s])
            h->symbol[offs[lengths[s]]++] = (uint16_t)s;
    return 0; /* incomplete codes are allowed by zlib for one-code distance trees; decode rejects misses */
}

static int decode(reader_t *r, const huffman_t *h)
{
    int code = 0, first = 0, index = 0;
    for (int len = 1; len <= MAX_BITS; len++) {
        int32_t b = bits(r, 1);
        if (b < 0)
            return K210_INFLATE_TRUNCATED;
        code |= b;
        int count = h->count[len];
        if (code - first < count)
            return h->symbol[index + (code - first)];
        index += count;
        first = (first + count) << 1;
        code <<= 1;
    }
    return K210_INFLATE_BAD_BLOCK; /* a code that is in no table */
}

static int stored(reader_t *r)
{
    r->bitbuf = 0; /* skip to the byte boundary */
    r->bitcnt = 0;
    if (r->pos + 4 > r->n)
        return K210_INFLATE_TRUNCATED;
    unsigned len = r->src[r->pos] | (unsigned)r->src[r->pos + 1] << 8;
    unsigned nlen = r->src[r->pos + 2] | (unsigned)r->src[r->pos + 3] << 8;
    r->pos += 4;
    if (len != (~nlen & 0xFFFFu))
        return K210_INFLATE_BAD_BLOCK;
    if (r->pos + len > r->n)
        return K210_INFLATE_TRUNCATED;
    if (r->out + len > r->cap)
        return K210_INFLATE_TOO_BIG;
    memcpy(r->dst + r->out, r->src + r->pos, len);
    r->pos += len;
    r->out += len;
    return K210_INFLATE_OK;
}

static int codes(reader_t *r, const huffman_t *lit, const huffman_t *dist)
{
    for (;;) {
        int sym = decode(r, lit);
        if (sym < 0)
            return sym;
        if (sym < 256) {
            if (r->out >= r->cap)
                return K210_INFLATE_TOO_BIG;
            r->dst[r->out++] = (uint8_t)sym;
        } else if (sym == 256) {
            return K210_INFLATE_OK;
        } else {
            sym -= 257;
            if (sym >= 29)
                return K210_INFLATE_BAD_BLOCK;
            int32_t e = bits(r, LEN_EXTRA[sym]);
            if (e < 0)
                return K210_INFLATE_TRUNCATED;
            size_t len = LEN_BASE[sym] + (size_t)e;
            int d = decode(r, dist);
            if (d < 0)
                return d;
            if (d >= MAX_DIST)
                return K210_INFLATE_BAD_BLOCK;
            e = bits(r, DIST_EXTRA[d]);
            if (e < 0)
                return K210_INFLATE_TRUNCATED;
            size_t back = DIST_BASE[d] + (size_t)e;
            if (back > r->out)
                return K210_INFLATE_BAD_DISTANCE;
            if (r->out + len > r->cap)
                return K210_INFLATE_TOO_BIG;
            for (size_t i = 0; i < len; i++, r->out++) /* byte by byte: a match may overlap itself */
                r->dst[r->out] = r->dst[r->out - back];
        }
    }
}

static int fixed(reader_t *r)
{
    static huffman_t lit, dist;
    static int ready = 0;
    if (!ready) {
        uint8_t lengths[MAX_LIT];
        int s = 0;
        for (; s < 144; s++)
            lengths[s] = 8;
        for (; s < 256; s++)
            lengths[s] = 9;
        for (; s < 280; s++)
            lengths[s] = 7;
        for (; s < MAX_LIT; s++)
            lengths[s] = 8;
        build(&lit, lengths, MAX_LIT);
        for (s = 0; s < MAX_DIST; s++)
            lengths[s] = 5;
        build(&dist, lengths, MAX_DIST);
        ready = 1;
    }
    return codes(r, &lit, &dist);
}

static int dynamic(reader_t *r)
{
    /* Static, not on the stack: three tables are ~1.8 KiB and the K210 glue keeps every frame under
     * 1 KiB (tests/test_c_cross.py). Not reentrant, which a single-threaded runner does not need. */
    static huffman_t lit, dist, cl;
    uint8_t lengths[MAX_LIT + MAX_DIST];
    int32_t hlit = bits(r, 5), hdist = bits(r, 5), hclen = bits(r, 4);
    if (hlit < 0 || hdist < 0 || hclen < 0)
        return K210_INFLATE_TRUNCATED;
    hlit += 257;
    hdist += 1;
    hclen += 4;
    if (hlit > 286 || hdist > MAX_DIST)
        return K210_INFLATE_BAD_BLOCK;
    memset(lengths, 0, 19);
    for (int i = 0; i < hclen; i++) {
        int32_t v = bits(r, 3);
        if (v < 0)
            return K210_INFLATE_TRUNCATED;
        lengths[CL_ORDER[i]] = (uint8_t)v;
    }
    if (build(&cl, lengths, 19) != 0)
        return K210_INFLATE_BAD_BLOCK;
    int at = 0;
    while (at < hlit + hdist) {
        int sym = decode(r, &cl);
        if (sym < 0)
            return sym;
        if (sym < 16) {
            lengths[at++] = (uint8_t)sym;
            continue;
        }
        uint8_t value = 0;
        int32_t rep;
        if (sym == 16) {
            if (at == 0)
                return K210_INFLATE_BAD_BLOCK; /* nothing to repeat */
            value = lengths[at - 1];
            rep = bits(r, 2);
            rep = rep < 0 ? -1 : rep + 3;
        } else if (sym == 17) {
            rep = bits(r, 3);
            rep = rep < 0 ? -1 : rep + 3;
        } else {
            rep = bits(r, 7);
            rep = rep < 0 ? -1 : rep + 11;
        }
        if (rep < 0)
            return K210_INFLATE_TRUNCATED;
        if (at + rep > hlit + hdist)
            return K210_INFLATE_BAD_BLOCK;
        while (rep--)
            lengths[at++] = value;
    }
    if (lengths[256] == 0)
        return K210_INFLATE_BAD_BLOCK; /* no end-of-block code */
    if (build(&lit, lengths, hlit) != 0 || build(&dist, lengths + hlit, hdist) != 0)
        return K210_INFLATE_BAD_BLOCK;
    return codes(r, &lit, &dist);
}

uint32_t k210_adler32(const uint8_t *data, size_t n)
{
    uint32_t a = 1, b = 0;
    while (n) {
        size_t k = n < 5552 ? n : 5552; /* the most bytes before b can overflow 32 bits */
        n -= k;
        while (k--) {
            a += *data++;
            b += a;
        }
        a %= 65521u;
        b %= 65521u;
    }
    return b << 16 | a;
}

int k210_zlib_inflate(const uint8_t *src, size_t n, uint8_t *dst, size_t cap, size_t *out_len)
{
    if (n < 6)
        return K210_INFLATE_TRUNCATED;
    unsigned cmf = src[0], flg = src[1];
    if ((cmf & 0x0F) != 8 || (cmf >> 4) > 7 || ((cmf << 8) | flg) % 31 != 0 || (flg & 0x20))
        return K210_INFLATE_BAD_HEADER;
    reader_t r = {src, n - 4, 2, 0, 0, dst, cap, 0}; /* the last 4 bytes are the Adler-32 */
    int last;
    do {
        int32_t hdr = bits(&r, 3);
        if (hdr < 0)
            return K210_INFLATE_TRUNCATED;
        last = hdr & 1;
        int type = hdr >> 1, err;
        if (type == 0)
            err = stored(&r);
        else if (type == 1)
            err = fixed(&r);
        else if (type == 2)
            err = dynamic(&r);
        else
            err = K210_INFLATE_BAD_BLOCK;
        if (err != K210_INFLATE_OK)
            return err;
    } while (!last);
    if (r.pos != r.n)
        return K210_INFLATE_BAD_BLOCK; /* bytes between the last block and the trailer */
    const uint8_t *t = src + n - 4;
    uint32_t want = (uint32_t)t[0] << 24 | (uint32_t)t[1] << 16 | (uint32_t)t[2] << 8 | t[3];
    if (k210_adler32(dst, r.out) != want)
        return K210_INFLATE_BAD_CHECKSUM;
    *out_len = r.out;
    return K210_INFLATE_OK;
}

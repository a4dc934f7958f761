#include "wire.h"

#include <string.h>

#include "crc32.h"

/* ---- writer ---- */

void k210w_out_init(k210w_out_t *o, uint8_t *buf, size_t cap)
{
    o->buf = buf;
    o->cap = cap;
    o->len = 0;
    o->overflow = 0;
}

void k210w_put_bytes(k210w_out_t *o, const void *data, size_t len)
{
    if (o->overflow || len > o->cap - o->len) {
        o->overflow = 1;
        return;
    }
    if (len)
        memcpy(o->buf + o->len, data, len);
    o->len += len;
}

void k210w_put_u8(k210w_out_t *o, uint8_t v)
{
    k210w_put_bytes(o, &v, 1);
}

void k210w_put_u16(k210w_out_t *o, uint16_t v)
{
    uint8_t b[2];
    b[0] = (uint8_t)v;
    b[1] = (uint8_t)(v >> 8);
    k210w_put_bytes(o, b, 2);
}

void k210w_put_u32(k210w_out_t *o, uint32_t v)
{
    uint8_t b[4];
    b[0] = (uint8_t)v;
    b[1] = (uint8_t)(v >> 8);
    b[2] = (uint8_t)(v >> 16);
    b[3] = (uint8_t)(v >> 24);
    k210w_put_bytes(o, b, 4);
}

void k210w_put_str(k210w_out_t *o, const char *s, size_t len)
{
    if (len > K210W_MAX_STR)
        len = K210W_MAX_STR;
    k210w_put_u8(o, (uint8_t)len);
    k210w_put_bytes(o, s, len);
}

static void put_cstr(k210w_out_t *o, const char *s)
{
    k210w_put_str(o, s ? s : "", s ? strlen(s) : 0);
}

void k210w_put_desc(k210w_out_t *o, const k210w_desc_t *d)
{
    uint8_t i;
    if (d->ndim > K210W_MAX_NDIM) {
        o->overflow = 1;
        return;
    }
    k210w_put_u8(o, d->dtype);
    k210w_put_u8(o, d->ndim);
    for (i = 0; i < d->ndim; i++)
        k210w_put_u32(o, d->dims[i]);
}

static void put_io(k210w_out_t *o, const k210w_io_t *io)
{
    uint8_t i;
    if (io->n_inputs > K210W_MAX_TENSORS || io->n_outputs > K210W_MAX_TENSORS) {
        o->overflow = 1;
        return;
    }
    for (i = 0; i < io->n_inputs; i++)
        k210w_put_desc(o, &io->inputs[i]);
    for (i = 0; i < io->n_outputs; i++)
        k210w_put_desc(o, &io->outputs[i]);
}

void k210w_put_hello(k210w_out_t *o, uint32_t max_frame, uint32_t rx_window, uint32_t nonce, uint32_t max_model,
                     uint32_t max_input, uint32_t rx_frames, uint32_t rx_dropped, const uint8_t *versions,
                     uint8_t n_versions, const char *firmware, const char *fw_version, const char *backend,
                     uint16_t caps)
{
    k210w_put_u8(o, K210W_PROTOCOL_VERSION);
    k210w_put_u8(o, n_versions);
    k210w_put_u16(o, caps);
    k210w_put_u32(o, max_frame);
    k210w_put_u32(o, rx_window);
    k210w_put_u32(o, nonce);
    k210w_put_u32(o, max_model);
    k210w_put_u32(o, max_input);
    k210w_put_u32(o, rx_frames);
    k210w_put_u32(o, rx_dropped);
    k210w_put_bytes(o, versions, n_versions);
    put_cstr(o, firmware);
    put_cstr(o, fw_version);
    put_cstr(o, backend);
}

void k210w_put_model_info(k210w_out_t *o, int loaded, uint8_t version, uint32_t size, const uint8_t sha256[32],
                          const char *source, const k210w_io_t *io)
{
    k210w_put_u8(o, loaded ? 1 : 0);
    k210w_put_u8(o, version);
    k210w_put_u8(o, io->n_inputs);
    k210w_put_u8(o, io->n_outputs);
    k210w_put_u32(o, size);
    k210w_put_bytes(o, sha256, 32);
    put_cstr(o, source);
    put_io(o, io);
}

void k210w_put_load_begin(k210w_out_t *o, uint32_t size, const uint8_t sha256[32], const k210w_io_t *io)
{
    k210w_put_u32(o, size);
    k210w_put_bytes(o, sha256, 32);
    k210w_put_u8(o, io->n_inputs);
    k210w_put_u8(o, io->n_outputs);
    put_io(o, io);
}

void k210w_put_load_chunk(k210w_out_t *o, uint32_t offset, const uint8_t *data, uint32_t len)
{
    k210w_put_u32(o, offset);
    k210w_put_bytes(o, data, len);
}

void k210w_put_infer_chunk(k210w_out_t *o, uint16_t req, uint16_t mode, uint32_t total, uint32_t offset,
                           const uint8_t *data, uint32_t len)
{
    k210w_put_u16(o, req);
    k210w_put_u16(o, mode);
    k210w_put_u32(o, total);
    k210w_put_u32(o, offset);
    k210w_put_bytes(o, data, len);
}

void k210w_put_ack(k210w_out_t *o, uint16_t req, uint32_t next)
{
    k210w_put_u16(o, req);
    k210w_put_u16(o, 0);
    k210w_put_u32(o, next);
}

void k210w_put_result_header(k210w_out_t *o, uint16_t req, uint8_t n_outputs, uint32_t micros, uint32_t total,
                             uint32_t offset)
{
    k210w_put_u16(o, req);
    k210w_put_u8(o, n_outputs);
    k210w_put_u8(o, 0);
    k210w_put_u32(o, micros);
    k210w_put_u32(o, total);
    k210w_put_u32(o, offset);
}

void k210w_put_error(k210w_out_t *o, uint16_t code, uint16_t req, uint32_t detail, const char *text)
{
    k210w_put_u16(o, code);
    k210w_put_u16(o, req);
    k210w_put_u32(o, detail);
    put_cstr(o, text);
}

void k210w_put_log(k210w_out_t *o, uint8_t level, const char *text)
{
    k210w_put_u8(o, level);
    put_cstr(o, text);
}

void k210w_put_record_header(k210w_out_t *o, const k210w_desc_t *d, uint32_t nbytes)
{
    uint8_t i;
    k210w_put_u8(o, d->dtype);
    k210w_put_u8(o, d->ndim);
    k210w_put_u16(o, 0);
    k210w_put_u32(o, nbytes);
    for (i = 0; i < d->ndim && i < K210W_MAX_NDIM; i++)
        k210w_put_u32(o, d->dims[i]);
}

size_t k210w_record_header_len(const k210w_desc_t *d)
{
    return K210W_RECORD_LEN + 4u * d->ndim;
}

/* ---- reader: bounds-checked, the error is sticky ---- */

typedef struct {
    const uint8_t *p;
    size_t len, off;
    int err;
} rd_t;

static int need(rd_t *r, size_t n)
{
    if (r->err || n > r->len - r->off) {
        r->err = 1;
        return 0;
    }
    return 1;
}

static uint8_t get_u8(rd_t *r)
{
    return need(r, 1) ? r->p[r->off++] : 0;
}

static uint16_t get_u16(rd_t *r)
{
    uint16_t v;
    if (!need(r, 2))
        return 0;
    v = (uint16_t)(r->p[r->off] | r->p[r->off + 1] << 8);
    r->off += 2;
    return v;
}

static uint32_t get_u32(rd_t *r)
{
    uint32_t v;
    if (!need(r, 4))
        return 0;
    v = (uint32_t)r->p[r->off] | (uint32_t)r->p[r->off + 1] << 8 | (uint32_t)r->p[r->off + 2] << 16 |
        (uint32_t)r->p[r->off + 3] << 24;
    r->off += 4;
    return v;
}

static void get_bytes(rd_t *r, uint8_t *dst, size_t n)
{
    if (!need(r, n))
        return;
    memcpy(dst, r->p + r->off, n);
    r->off += n;
}

static void get_str(rd_t *r, k210w_str_t *s)
{
    s->len = get_u8(r);
    s->ptr = NULL;
    if (!need(r, s->len))
        return;
    s->ptr = r->p + r->off;
    r->off += s->len;
}

static void get_desc(rd_t *r, k210w_desc_t *d)
{
    uint8_t i;
    d->dtype = get_u8(r);
    d->ndim = get_u8(r);
    if (d->ndim > K210W_MAX_NDIM) {
        r->err = 1;
        return;
    }
    for (i = 0; i < d->ndim; i++)
        d->dims[i] = get_u32(r);
}

static void get_io(rd_t *r, k210w_io_t *io, uint8_t n_in, uint8_t n_out)
{
    uint8_t i;
    if (n_in > K210W_MAX_TENSORS || n_out > K210W_MAX_TENSORS) {
        r->err = 1;
        return;
    }
    io->n_inputs = n_in;
    io->n_outputs = n_out;
    for (i = 0; i < n_in; i++)
        get_desc(r, &io->inputs[i]);
    for (i = 0; i < n_out; i++)
        get_desc(r, &io->outputs[i]);
}

static void rd_init(rd_t *r, const uint8_t *p, size_t len)
{
    r->p = p;
    r->len = len;
    r->off = 0;
    r->err = 0;
}

int k210w_parse_header(const uint8_t *frame, size_t len, k210w_header_t *h)
{
    rd_t r;
    rd_init(&r, frame, len);
    h->version = get_u8(&r);
    h->type = get_u8(&r);
    h->flags = get_u8(&r);
    (void)get_u8(&r);
    h->seq = get_u16(&r);
    return r.err ? -1 : 0;
}

int k210w_parse_hello(const uint8_t *p, size_t len, k210w_hello_t *m)
{
    rd_t r;
    rd_init(&r, p, len);
    m->proto = get_u8(&r);
    m->n_versions = get_u8(&r);
    m->caps = get_u16(&r);
    m->max_frame = get_u32(&r);
    m->rx_window = get_u32(&r);
    m->nonce = get_u32(&r);
    m->max_model = get_u32(&r);
    m->max_input = get_u32(&r);
    m->rx_frames = get_u32(&r);
    m->rx_dropped = get_u32(&r);
    m->versions = NULL;
    if (need(&r, m->n_versions)) {
        m->versions = p + r.off;
        r.off += m->n_versions;
    }
    get_str(&r, &m->firmware);
    get_str(&r, &m->fw_version);
    get_str(&r, &m->backend);
    return r.err ? -1 : 0;
}

int k210w_parse_model_info(const uint8_t *p, size_t len, k210w_model_info_t *m)
{
    rd_t r;
    uint8_t n_in, n_out;
    rd_init(&r, p, len);
    m->loaded = get_u8(&r);
    m->kmodel_version = get_u8(&r);
    n_in = get_u8(&r);
    n_out = get_u8(&r);
    m->size = get_u32(&r);
    get_bytes(&r, m->sha256, 32);
    get_str(&r, &m->source);
    get_io(&r, &m->io, n_in, n_out);
    return r.err ? -1 : 0;
}

int k210w_parse_load_begin(const uint8_t *p, size_t len, k210w_load_begin_t *m)
{
    rd_t r;
    uint8_t n_in, n_out;
    rd_init(&r, p, len);
    m->size = get_u32(&r);
    get_bytes(&r, m->sha256, 32);
    n_in = get_u8(&r);
    n_out = get_u8(&r);
    get_io(&r, &m->io, n_in, n_out);
    return r.err ? -1 : 0;
}

static void rest(rd_t *r, const uint8_t **data, uint32_t *len)
{
    *data = r->p + r->off;
    *len = r->err ? 0 : (uint32_t)(r->len - r->off);
}

int k210w_parse_load_chunk(const uint8_t *p, size_t len, k210w_chunk_t *m)
{
    rd_t r;
    rd_init(&r, p, len);
    m->req = 0;
    m->mode = 0;
    m->total = 0;
    m->offset = get_u32(&r);
    rest(&r, &m->data, &m->len);
    return r.err ? -1 : 0;
}

int k210w_parse_infer_chunk(const uint8_t *p, size_t len, k210w_chunk_t *m)
{
    rd_t r;
    rd_init(&r, p, len);
    m->req = get_u16(&r);
    m->mode = get_u16(&r);
    m->total = get_u32(&r);
    m->offset = get_u32(&r);
    rest(&r, &m->data, &m->len);
    return r.err ? -1 : 0;
}

int k210w_parse_ack(const uint8_t *p, size_t len, k210w_ack_t *m)
{
    rd_t r;
    rd_init(&r, p, len);
    m->req = get_u16(&r);
    (void)get_u16(&r);
    m->next = get_u32(&r);
    return r.err ? -1 : 0;
}

int k210w_parse_result(const uint8_t *p, size_t len, k210w_result_t *m)
{
    rd_t r;
    rd_init(&r, p, len);
    m->req = get_u16(&r);
    m->n_outputs = get_u8(&r);
    (void)get_u8(&r);
    m->micros = get_u32(&r);
    m->total = get_u32(&r);
    m->offset = get_u32(&r);
    rest(&r, &m->data, &m->len);
    return r.err ? -1 : 0;
}

int k210w_parse_error(const uint8_t *p, size_t len, k210w_error_t *m)
{
    rd_t r;
    rd_init(&r, p, len);
    m->code = get_u16(&r);
    m->req = get_u16(&r);
    m->detail = get_u32(&r);
    get_str(&r, &m->text);
    return r.err ? -1 : 0;
}

int k210w_parse_log(const uint8_t *p, size_t len, k210w_log_t *m)
{
    rd_t r;
    rd_init(&r, p, len);
    m->level = get_u8(&r);
    get_str(&r, &m->text);
    return r.err ? -1 : 0;
}

long k210w_parse_record(const uint8_t *p, size_t len, k210w_desc_t *d, const uint8_t **data, uint32_t *nbytes)
{
    rd_t r;
    uint8_t i;
    rd_init(&r, p, len);
    d->dtype = get_u8(&r);
    d->ndim = get_u8(&r);
    (void)get_u16(&r);
    *nbytes = get_u32(&r);
    if (d->ndim > K210W_MAX_NDIM)
        return -1;
    for (i = 0; i < d->ndim; i++)
        d->dims[i] = get_u32(&r);
    *data = NULL;
    if (need(&r, *nbytes)) {
        *data = p + r.off;
        r.off += *nbytes;
    }
    return r.err ? -1 : (long)r.off;
}

long long k210w_tensor_nbytes(const k210w_desc_t *d)
{
    static const uint8_t sizes[12] = {1, 2, 4, 8, 1, 2, 4, 8, 2, 4, 8, 2};
    unsigned long long n;
    uint8_t i;
    if (d->dtype >= sizeof sizes || d->ndim > K210W_MAX_NDIM)
        return -1;
    n = sizes[d->dtype];
    for (i = 0; i < d->ndim; i++) {
        if (d->dims[i] && n > 0xFFFFFFFFull / d->dims[i])
            return -1; /* more than 4 GiB: no K210 tensor */
        n *= d->dims[i];
    }
    return (long long)n;
}

uint32_t k210w_kmodel_version(const uint8_t *head, size_t len)
{
    if (len >= 8 && memcmp(head, "LDMK", 4) == 0)
        return (uint32_t)head[4] | (uint32_t)head[5] << 8 | (uint32_t)head[6] << 16 | (uint32_t)head[7] << 24;
    if (len >= 4 && head[0] == 3 && head[1] == 0 && head[2] == 0 && head[3] == 0)
        return 3;
    return 0;
}

/* ---- frames ---- */

size_t k210w_frame_seal(uint8_t *raw, size_t payload_len, uint8_t type, uint8_t flags, uint16_t seq, uint8_t *enc)
{
    size_t body = K210W_HEADER_LEN + payload_len, n;
    uint32_t crc;
    raw[0] = K210W_PROTOCOL_VERSION;
    raw[1] = type;
    raw[2] = flags;
    raw[3] = 0;
    raw[4] = (uint8_t)seq;
    raw[5] = (uint8_t)(seq >> 8);
    crc = k210w_crc32(0, raw, body);
    raw[body] = (uint8_t)crc;
    raw[body + 1] = (uint8_t)(crc >> 8);
    raw[body + 2] = (uint8_t)(crc >> 16);
    raw[body + 3] = (uint8_t)(crc >> 24);
    n = k210w_cobs_encode(raw, body + K210W_CRC_LEN, enc);
    enc[n] = 0;
    return n + 1;
}

void k210w_decoder_init(k210w_decoder_t *d, uint8_t *enc, size_t enc_cap, uint8_t *dec, size_t dec_cap)
{
    memset(d, 0, sizeof *d);
    d->enc = enc;
    d->enc_cap = enc_cap;
    d->dec = dec;
    d->dec_cap = dec_cap;
}

uint32_t k210w_decoder_dropped(const k210w_decoder_t *d)
{
    return d->bad_crc + d->bad_cobs + d->overruns + d->runts;
}

static void finish_frame(k210w_decoder_t *d, size_t k, k210w_frame_fn fn, void *ctx)
{
    long n = k210w_cobs_decode(d->enc, k, d->dec, d->dec_cap);
    size_t body;
    uint32_t want;
    if (n == K210W_COBS_TOO_LONG) {
        d->overruns++;
        return;
    }
    if (n < 0) {
        d->bad_cobs++;
        return;
    }
    if ((size_t)n < K210W_OVERHEAD) {
        d->runts++;
        return;
    }
    body = (size_t)n - K210W_CRC_LEN;
    want = (uint32_t)d->dec[body] | (uint32_t)d->dec[body + 1] << 8 | (uint32_t)d->dec[body + 2] << 16 |
           (uint32_t)d->dec[body + 3] << 24;
    if (k210w_crc32(0, d->dec, body) != want) {
        d->bad_crc++;
        return;
    }
    d->frames++;
    fn(ctx, d->dec, body);
}

void k210w_decoder_feed(k210w_decoder_t *d, const uint8_t *data, size_t n, k210w_frame_fn fn, void *ctx)
{
    size_t i;
    for (i = 0; i < n; i++) {
        uint8_t b = data[i];
        if (b == 0) {
            if (d->skipping) {
                d->skipping = 0;
            } else if (d->n) {
                size_t k = d->n;
                d->n = 0;
                finish_frame(d, k, fn, ctx);
            }
        } else if (d->skipping) {
            /* inside an over-long frame: wait for its delimiter */
        } else if (d->n < d->enc_cap) {
            d->enc[d->n++] = b;
        } else {
            d->skipping = 1;
            d->overruns++;
            d->n = 0;
        }
    }
}

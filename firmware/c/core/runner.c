#include "runner.h"

#include <stdio.h>
#include <string.h>

#include "inflate.h"
#include "sha256.h"

/* ---- replies ---- */

static k210w_out_t payload(k210w_runner_t *r)
{
    k210w_out_t o;
    k210w_out_init(&o, r->cfg.tx_raw + K210W_HEADER_LEN, r->cfg.max_frame - K210W_OVERHEAD);
    return o;
}

static void send(k210w_runner_t *r, uint8_t type, uint8_t flags, uint16_t seq, const k210w_out_t *o)
{
    size_t n;
    if (o->overflow) { /* cannot happen with max_frame >= K210W_MIN_MAX_FRAME: strings are short */
        k210w_out_t e = payload(r);
        k210w_put_error(&e, K210W_E_INTERNAL, 0, 0, "reply does not fit the frame");
        n = k210w_frame_seal(r->cfg.tx_raw, e.len, K210W_ERROR, flags, seq, r->cfg.tx_enc);
    } else {
        n = k210w_frame_seal(r->cfg.tx_raw, o->len, type, flags, seq, r->cfg.tx_enc);
    }
    r->cfg.write(r->cfg.write_ctx, r->cfg.tx_enc, n);
}

static void reply_error(k210w_runner_t *r, uint16_t seq, uint16_t code, uint16_t req, uint32_t detail,
                        const char *text)
{
    /* Cut the text to what the frame holds: an ERROR must always go out. */
    size_t room = r->cfg.max_frame - K210W_OVERHEAD - K210W_ERROR_LEN - 1u, n = strlen(text);
    k210w_out_t o = payload(r);
    k210w_put_u16(&o, code);
    k210w_put_u16(&o, req);
    k210w_put_u32(&o, detail);
    k210w_put_str(&o, text, n < room ? n : room);
    send(r, K210W_ERROR, K210W_FLAG_REPLY, seq, &o);
}

static void reply_ack(k210w_runner_t *r, uint16_t seq, uint16_t req, uint32_t next)
{
    k210w_out_t o = payload(r);
    k210w_put_ack(&o, req, next);
    send(r, K210W_ACK, K210W_FLAG_REPLY, seq, &o);
}

static void put_hello(k210w_runner_t *r, k210w_out_t *o)
{
    const k210w_backend_t *b = r->cfg.backend;
    k210w_put_hello(o, r->cfg.max_frame, r->cfg.rx_window, r->cfg.nonce, b->model_buffer ? r->cfg.max_model : 0,
                    r->cfg.max_input, r->rx.frames, k210w_decoder_dropped(&r->rx), b->kmodel_versions,
                    b->n_kmodel_versions, r->cfg.firmware, r->cfg.fw_version, b->name, r->caps);
}

static void reply_model_info(k210w_runner_t *r, uint16_t seq)
{
    k210w_out_t o = payload(r);
    k210w_put_model_info(&o, r->model.loaded, (uint8_t)r->model.version, r->model.size, r->model.sha256,
                         r->model.source, &r->model.io);
    send(r, K210W_MODEL_INFO, K210W_FLAG_REPLY, seq, &o);
}

static uint16_t next_event_seq(k210w_runner_t *r)
{
    return r->event_seq++;
}

/* ---- state ---- */

static void reset_load(k210w_runner_t *r)
{
    memset(&r->load, 0, sizeof r->load);
}

static void reset_infer(k210w_runner_t *r)
{
    memset(&r->infer, 0, sizeof r->infer);
}

static void unload_model(k210w_runner_t *r)
{
    if (r->model.loaded && r->cfg.backend->unload)
        r->cfg.backend->unload(r->cfg.backend->ctx);
    memset(&r->model, 0, sizeof r->model);
    r->model.input_bytes = -1;
}

static void set_model(k210w_runner_t *r, uint32_t version, uint32_t size, const uint8_t sha[32], const char *source,
                      const k210w_io_t *io)
{
    uint8_t i;
    long long total = 0;
    r->model.loaded = 1;
    r->model.version = version;
    r->model.size = size;
    memcpy(r->model.sha256, sha, 32);
    snprintf(r->model.source, sizeof r->model.source, "%s", source);
    r->model.io = *io;
    for (i = 0; i < io->n_inputs; i++) {
        long long n = k210w_tensor_nbytes(&io->inputs[i]);
        if (n < 0) {
            total = -1;
            break;
        }
        total += n;
    }
    r->model.input_bytes = io->n_inputs ? total : -1;
}

static int version_supported(const k210w_backend_t *b, uint32_t version)
{
    uint8_t i;
    for (i = 0; i < b->n_kmodel_versions; i++)
        if (b->kmodel_versions[i] == version)
            return 1;
    return 0;
}

static void why_not(k210w_runner_t *r, uint32_t version)
{
    const k210w_backend_t *b = r->cfg.backend;
    size_t at = (size_t)snprintf(r->text, sizeof r->text, "%s loads kmodel", b->name);
    uint8_t i;
    for (i = 0; i < b->n_kmodel_versions && at < sizeof r->text; i++)
        at += (size_t)snprintf(r->text + at, sizeof r->text - at, "%sv%u", i ? "/" : " ", b->kmodel_versions[i]);
    if (at < sizeof r->text) {
        if (version)
            snprintf(r->text + at, sizeof r->text - at, "; this file is kmodel v%lu", (unsigned long)version);
        else
            snprintf(r->text + at, sizeof r->text - at, "; this file is not a kmodel");
    }
}

/* ---- LOAD_MODEL ---- */

static void on_load_begin(k210w_runner_t *r, uint16_t seq, const uint8_t *p, size_t len)
{
    k210w_load_begin_t m;
    const k210w_backend_t *b = r->cfg.backend;
    uint8_t *buf;
    if (k210w_parse_load_begin(p, len, &m) != 0) {
        reply_error(r, seq, K210W_E_BAD_PAYLOAD, 0, 0, "malformed LOAD_BEGIN");
        return;
    }
    if (!b->model_buffer) {
        reply_error(r, seq, K210W_E_UNSUPPORTED, 0, 0, "this board has no upload storage; flash the model instead");
        return;
    }
    if (m.size == 0) {
        reply_error(r, seq, K210W_E_BAD_PAYLOAD, 0, 0, "empty model");
        return;
    }
    if (m.size > r->cfg.max_model) {
        snprintf(r->text, sizeof r->text, "model of %lu bytes, this board takes at most %lu", (unsigned long)m.size,
                 (unsigned long)r->cfg.max_model);
        reply_error(r, seq, K210W_E_TOO_BIG, 0, r->cfg.max_model, r->text);
        return;
    }
    /* The upload replaces the model: the board has no room for two. */
    reset_load(r);
    reset_infer(r);
    unload_model(r);
    buf = b->model_buffer(b->ctx, m.size);
    if (!buf) {
        reply_error(r, seq, K210W_E_TOO_BIG, 0, r->cfg.max_model, "no model buffer of that size");
        return;
    }
    r->load.state = K210W_RECEIVING;
    r->load.size = m.size;
    r->load.buf = buf;
    memcpy(r->load.sha256, m.sha256, 32);
    r->load.io = m.io;
    reply_ack(r, seq, 0, 0);
}

static void on_load_chunk(k210w_runner_t *r, uint16_t seq, const uint8_t *p, size_t len)
{
    k210w_chunk_t m;
    uint32_t end, head_was;
    if (k210w_parse_load_chunk(p, len, &m) != 0) {
        reply_error(r, seq, K210W_E_BAD_PAYLOAD, 0, 0, "malformed LOAD_CHUNK");
        return;
    }
    if (r->load.state == K210W_DONE && m.offset <= r->load.size && m.len <= r->load.size - m.offset) {
        reply_ack(r, seq, 0, r->load.size); /* late duplicate after COMMIT */
        return;
    }
    if (r->load.state != K210W_RECEIVING) {
        reply_error(r, seq, K210W_E_NOT_LOADING, 0, 0, "LOAD_CHUNK without LOAD_BEGIN");
        return;
    }
    if (m.offset > r->load.expected) {
        snprintf(r->text, sizeof r->text, "chunk at %lu, expected %lu", (unsigned long)m.offset,
                 (unsigned long)r->load.expected);
        reply_error(r, seq, K210W_E_GAP, 0, r->load.expected, r->text);
        return;
    }
    if (m.len > r->load.size - m.offset) {
        reply_error(r, seq, K210W_E_BAD_PAYLOAD, 0, 0, "chunk ends past the model size");
        return;
    }
    end = m.offset + m.len;
    head_was = r->load.expected;
    if (end > r->load.expected) {
        uint32_t skip = r->load.expected - m.offset;
        memcpy(r->load.buf + r->load.expected, m.data + skip, end - r->load.expected);
        r->load.expected = end;
    }
    if (head_was < 8 && r->load.expected >= (r->load.size < 8 ? r->load.size : 8)) {
        uint32_t version = k210w_kmodel_version(r->load.buf, r->load.expected);
        if (!version_supported(r->cfg.backend, version)) {
            reset_load(r);
            why_not(r, version);
            reply_error(r, seq, K210W_E_UNSUPPORTED_KMODEL, 0, version, r->text);
            return;
        }
        r->load.version = version;
    }
    reply_ack(r, seq, 0, r->load.expected);
}

static void on_load_commit(k210w_runner_t *r, uint16_t seq)
{
    const k210w_backend_t *b = r->cfg.backend;
    uint8_t digest[32];
    int err;
    if (r->load.state == K210W_DONE && r->model.loaded) {
        reply_model_info(r, seq); /* duplicate COMMIT */
        return;
    }
    if (r->load.state != K210W_RECEIVING) {
        reply_error(r, seq, K210W_E_NOT_LOADING, 0, 0, "LOAD_COMMIT without LOAD_BEGIN");
        return;
    }
    if (r->load.expected != r->load.size) {
        snprintf(r->text, sizeof r->text, "have %lu of %lu bytes", (unsigned long)r->load.expected,
                 (unsigned long)r->load.size);
        reply_error(r, seq, K210W_E_GAP, 0, r->load.expected, r->text);
        return;
    }
    reply_ack(r, seq, 0, r->load.size); /* "got it, working": the host now waits its long timeout */
    k210w_sha256(r->load.buf, r->load.size, digest);
    if (memcmp(digest, r->load.sha256, 32) != 0) {
        reset_load(r);
        reply_error(r, seq, K210W_E_HASH_MISMATCH, 0, 0, "sha256 of the received model differs from LOAD_BEGIN's");
        return;
    }
    r->text[0] = 0;
    err = b->load(b->ctx, r->load.buf, r->load.size, r->load.version, &r->load.io, r->text, sizeof r->text);
    if (err) {
        reset_load(r);
        reply_error(r, seq, (uint16_t)err, 0, 0, r->text[0] ? r->text : "the runtime refused the model");
        return;
    }
    set_model(r, r->load.version, r->load.size, digest, "upload", &r->load.io);
    r->load.state = K210W_DONE;
    reply_model_info(r, seq);
}

/* ---- INFER ---- */

static uint32_t blob_size(const k210w_runner_t *r)
{
    uint32_t total = 0;
    uint8_t i;
    for (i = 0; i < r->infer.n_outputs; i++)
        total += (uint32_t)k210w_record_header_len(&r->infer.outputs[i].desc) + r->infer.outputs[i].nbytes;
    return total;
}

/* Copy blob bytes [offset, offset + n) into o: record headers are built on the fly, output data
 * is copied straight from the backend's buffers (the blob is never materialised). */
static void copy_blob(const k210w_runner_t *r, uint32_t offset, uint32_t n, k210w_out_t *o)
{
    uint8_t head[K210W_RECORD_LEN + 4 * K210W_MAX_NDIM];
    uint32_t pos = 0;
    uint8_t i;
    for (i = 0; i < r->infer.n_outputs && n; i++) {
        const k210w_output_t *out = &r->infer.outputs[i];
        k210w_out_t h;
        int piece;
        k210w_out_init(&h, head, sizeof head);
        k210w_put_record_header(&h, &out->desc, out->nbytes);
        for (piece = 0; piece < 2; piece++) {
            const uint8_t *src = piece ? out->data : head;
            uint32_t plen = piece ? out->nbytes : (uint32_t)h.len;
            uint32_t lo = offset > pos ? offset : pos;
            uint32_t hi = offset + n < pos + plen ? offset + n : pos + plen;
            if (lo < hi)
                k210w_put_bytes(o, src + (lo - pos), hi - lo);
            pos += plen;
        }
    }
}

static void send_result(k210w_runner_t *r, uint16_t seq)
{
    uint32_t total = blob_size(r), offset = 0;
    uint32_t room = r->cfg.max_frame - K210W_OVERHEAD - K210W_RESULT_LEN;
    do {
        uint32_t n = total - offset < room ? total - offset : room;
        k210w_out_t o = payload(r);
        k210w_put_result_header(&o, r->infer.req, r->infer.n_outputs, r->infer.micros, total, offset);
        copy_blob(r, offset, n, &o);
        send(r, K210W_RESULT, K210W_FLAG_REPLY, seq, &o);
        offset += n;
    } while (offset < total);
}

/* Bytes of the stream that come before the tensor (or its zlib stream): the SHA-256 of KEEP and CACHED. */
static uint32_t hash_head(uint16_t mode)
{
    return mode & (K210W_MODE_KEEP | K210W_MODE_CACHED) ? K210W_SHA_LEN : 0u;
}

static int begin_request(k210w_runner_t *r, uint16_t seq, uint16_t req, uint16_t mode, uint32_t total)
{
    const char *why = NULL;
    uint16_t code = K210W_E_BAD_SIZE;
    uint32_t detail = r->model.input_bytes < 0 ? 0 : (uint32_t)r->model.input_bytes;
    uint32_t head = hash_head(mode);
    if (total == 0) {
        why = "empty input tensor";
    } else if (mode & K210W_MODE_CACHED && (total != K210W_SHA_LEN || mode != K210W_MODE_CACHED)) {
        detail = K210W_SHA_LEN;
        why = "a CACHED request is the 32-byte SHA-256 alone";
    } else if (total - head > r->cfg.max_input || total < head) {
        code = K210W_E_TOO_BIG;
        detail = r->cfg.max_input;
        snprintf(r->text, sizeof r->text, "input of %lu bytes, this board takes at most %lu", (unsigned long)total,
                 (unsigned long)r->cfg.max_input);
        why = r->text;
    } else if (mode == 0 && r->model.input_bytes >= 0 && (long long)total != r->model.input_bytes) {
        snprintf(r->text, sizeof r->text, "input of %lu bytes, the model takes %lu", (unsigned long)total,
                 (unsigned long)r->model.input_bytes);
        why = r->text;
    }
    if (why) {
        reply_error(r, seq, code, req, detail, why);
        return -1;
    }
    if (r->infer.state == K210W_RECEIVING)
        r->abandoned++;
    reset_infer(r);
    r->infer.state = K210W_RECEIVING;
    r->infer.req = req;
    r->infer.mode = mode;
    r->infer.total = total;
    return 0;
}

/* Stream bytes from offset `at`: the SHA-256 first (KEEP, CACHED), then the tensor, or its zlib stream
 * into the packed buffer (ZLIB). begin_request checked that it all fits. */
static void place(k210w_runner_t *r, uint32_t at, const uint8_t *data, uint32_t n)
{
    uint32_t head = hash_head(r->infer.mode);
    if (at < head) {
        uint32_t k = head - at < n ? head - at : n;
        memcpy(r->infer.sha256 + at, data, k);
        at += k;
        data += k;
        n -= k;
    }
    if (n)
        memcpy((r->infer.mode & K210W_MODE_ZLIB ? r->cfg.packed : r->cfg.input) + (at - head), data, n);
}

static const char *inflate_error(int err)
{
    switch (err) {
    case K210_INFLATE_TRUNCATED:
        return "the stream ends early";
    case K210_INFLATE_BAD_HEADER:
        return "not a zlib header";
    case K210_INFLATE_BAD_DISTANCE:
        return "a match before the start";
    case K210_INFLATE_BAD_CHECKSUM:
        return "Adler-32 differs";
    default:
        return "a bad block";
    }
}

static void hex8(char *out, const uint8_t *sha)
{
    static const char digits[] = "0123456789abcdef";
    int i;
    for (i = 0; i < 8; i++) {
        out[2 * i] = digits[sha[i] >> 4];
        out[2 * i + 1] = digits[sha[i] & 15];
    }
    out[16] = 0;
}

/* Puts a mode request's tensor into the input buffer (*n: its size), or answers the ERROR that says why
 * it cannot be had. Nothing runs on bytes that failed a check (PROTOCOL.md 4.1). */
static int tensor_of(k210w_runner_t *r, uint16_t seq, uint16_t req, uint32_t *n)
{
    uint16_t mode = r->infer.mode;
    char name[17];
    if (mode & K210W_MODE_CACHED) {
        long got = k210s_load(r->cfg.cache, r->infer.sha256, r->cfg.input, r->cfg.max_input);
        if (got < 0) {
            hex8(name, r->infer.sha256);
            snprintf(r->text, sizeof r->text, "sample %s %s", name,
                     got == K210S_DAMAGED ? "was damaged, dropped" : "not kept");
            reply_error(r, seq, K210W_E_NOT_CACHED, req, got == K210S_DAMAGED ? 1u : 0u, r->text);
            return -1;
        }
        *n = (uint32_t)got;
    } else if (mode & K210W_MODE_ZLIB) {
        size_t out = 0;
        int err = k210_zlib_inflate(r->cfg.packed, r->infer.total - hash_head(mode), r->cfg.input, r->cfg.max_input,
                                    &out);
        if (err == K210_INFLATE_TOO_BIG) {
            snprintf(r->text, sizeof r->text, "inflated input bigger than %lu bytes", (unsigned long)r->cfg.max_input);
            reply_error(r, seq, K210W_E_TOO_BIG, req, r->cfg.max_input, r->text);
            return -1;
        }
        if (err != K210_INFLATE_OK) {
            snprintf(r->text, sizeof r->text, "inflate failed: %s", inflate_error(err));
            reply_error(r, seq, K210W_E_BAD_PAYLOAD, req, 0, r->text);
            return -1;
        }
        *n = (uint32_t)out;
    } else {
        *n = r->infer.total - K210W_SHA_LEN;
    }
    if (r->model.input_bytes >= 0 && (long long)*n != r->model.input_bytes) {
        snprintf(r->text, sizeof r->text, "input of %lu bytes, the model takes %lu", (unsigned long)*n,
                 (unsigned long)r->model.input_bytes);
        reply_error(r, seq, K210W_E_BAD_SIZE, req, (uint32_t)r->model.input_bytes, r->text);
        return -1;
    }
    if (mode & K210W_MODE_KEEP) { /* checked on write: only the bytes the host hashed are run and kept */
        uint8_t digest[32];
        k210w_sha256(r->cfg.input, *n, digest);
        if (memcmp(digest, r->infer.sha256, 32) != 0) {
            reply_error(r, seq, K210W_E_HASH_MISMATCH, req, 0, "sha256 of the input differs from the request's");
            return -1;
        }
    }
    return 0;
}

static void on_infer_chunk(k210w_runner_t *r, uint16_t seq, const uint8_t *p, size_t len)
{
    const k210w_backend_t *b = r->cfg.backend;
    k210w_chunk_t m;
    uint32_t end, n;
    int err;
    if (k210w_parse_infer_chunk(p, len, &m) != 0) {
        reply_error(r, seq, K210W_E_BAD_PAYLOAD, 0, 0, "malformed INFER_CHUNK");
        return;
    }
    if (!r->model.loaded) {
        reply_error(r, seq, K210W_E_NO_MODEL, m.req, 0, "no model loaded");
        return;
    }
    if (m.mode & ~r->modes) {
        snprintf(r->text, sizeof r->text, "INFER mode 0x%x, this board takes 0x%x", m.mode, r->modes);
        reply_error(r, seq, K210W_E_UNSUPPORTED, m.req, r->modes, r->text);
        return;
    }
    if (m.req != r->infer.req || r->infer.state == K210W_IDLE) {
        if (m.offset != 0) {
            snprintf(r->text, sizeof r->text, "request %u is not the current one; restart it at offset 0", m.req);
            reply_error(r, seq, K210W_E_STALE, m.req, 0, r->text);
            return;
        }
        if (begin_request(r, seq, m.req, m.mode, m.total) != 0)
            return;
    } else if (m.mode != r->infer.mode) {
        snprintf(r->text, sizeof r->text, "request %u changed its mode", m.req);
        reply_error(r, seq, K210W_E_BAD_PAYLOAD, m.req, 0, r->text);
        return;
    } else if (m.total != r->infer.total) {
        reply_error(r, seq, K210W_E_BAD_SIZE, m.req, r->infer.total, "total differs from the request's first chunk");
        return;
    }
    if (m.offset > m.total || m.len > m.total - m.offset) {
        reply_error(r, seq, K210W_E_BAD_PAYLOAD, m.req, 0, "chunk ends past the tensor size");
        return;
    }
    end = m.offset + m.len;
    if (r->infer.state == K210W_DONE) {
        if (end == m.total)
            send_result(r, seq); /* retried final chunk: same result, no second run */
        else
            reply_ack(r, seq, m.req, m.total);
        return;
    }
    if (m.offset > r->infer.expected) {
        snprintf(r->text, sizeof r->text, "chunk at %lu, expected %lu", (unsigned long)m.offset,
                 (unsigned long)r->infer.expected);
        reply_error(r, seq, K210W_E_GAP, m.req, r->infer.expected, r->text);
        return;
    }
    if (end > r->infer.expected) {
        uint32_t skip = r->infer.expected - m.offset;
        place(r, r->infer.expected, m.data + skip, end - r->infer.expected);
        r->infer.expected = end;
    }
    reply_ack(r, seq, m.req, r->infer.expected); /* next == total means "got it all, running" */
    if (r->infer.expected < m.total)
        return;
    n = m.total;
    if (r->infer.mode) {
        r->infer.state = K210W_IDLE; /* a request whose tensor cannot be had is over: the host resends it */
        if (tensor_of(r, seq, m.req, &n) != 0)
            return;
    }
    r->text[0] = 0;
    r->infer.n_outputs = 0;
    err = b->infer(b->ctx, r->cfg.input, n, r->infer.outputs, &r->infer.n_outputs, &r->infer.micros, r->text,
                   sizeof r->text);
    if (err || r->infer.n_outputs > K210W_MAX_TENSORS) {
        r->infer.state = K210W_IDLE;
        reply_error(r, seq, err ? (uint16_t)err : K210W_E_INTERNAL, m.req, 0,
                    r->text[0] ? r->text : "inference failed");
        return;
    }
    /* Kept before the RESULT goes out: the host waits for the whole job after the "working" ACK. A write
     * that fails leaves the sample unkept, which the host learns from NOT_CACHED later. */
    if (r->infer.mode & K210W_MODE_KEEP)
        (void)k210s_keep(r->cfg.cache, r->infer.sha256, r->cfg.input, n);
    r->infer.state = K210W_DONE;
    send_result(r, seq);
}

/* ---- dispatch ---- */

static void on_frame(void *ctx, const uint8_t *frame, size_t len)
{
    k210w_runner_t *r = (k210w_runner_t *)ctx;
    k210w_header_t h;
    const uint8_t *p = frame + K210W_HEADER_LEN;
    size_t plen = len - K210W_HEADER_LEN;
    if (k210w_parse_header(frame, len, &h) != 0)
        return;
    if (h.flags & (K210W_FLAG_REPLY | K210W_FLAG_EVENT)) {
        r->ignored++; /* a board frame echoed back: never answer it */
        return;
    }
    if (h.version != K210W_PROTOCOL_VERSION) {
        snprintf(r->text, sizeof r->text, "protocol version %u, this board speaks %u", h.version,
                 K210W_PROTOCOL_VERSION);
        reply_error(r, h.seq, K210W_E_BAD_VERSION, 0, K210W_PROTOCOL_VERSION, r->text);
        return;
    }
    switch (h.type) {
    case K210W_INFER_CHUNK:
        on_infer_chunk(r, h.seq, p, plen);
        break;
    case K210W_LOAD_CHUNK:
        on_load_chunk(r, h.seq, p, plen);
        break;
    case K210W_HELLO_REQ: {
        k210w_out_t o = payload(r);
        reset_load(r);
        reset_infer(r);
        put_hello(r, &o);
        send(r, K210W_HELLO, K210W_FLAG_REPLY, h.seq, &o);
        if (r->boot_note[0])
            k210w_runner_log(r, r->boot_note_level, r->boot_note);
        break;
    }
    case K210W_MODEL_INFO_REQ:
        reply_model_info(r, h.seq);
        break;
    case K210W_LOAD_BEGIN:
        on_load_begin(r, h.seq, p, plen);
        break;
    case K210W_LOAD_COMMIT:
        on_load_commit(r, h.seq);
        break;
    case K210W_REBOOT:
        reply_ack(r, h.seq, 0, 0);
        if (r->cfg.reboot)
            r->cfg.reboot(r->cfg.reboot_ctx);
        break;
    default:
        snprintf(r->text, sizeof r->text, "unknown message type 0x%02x", h.type);
        reply_error(r, h.seq, K210W_E_UNKNOWN_TYPE, 0, h.type, r->text);
        break;
    }
}

/* ---- entry points ---- */

int k210w_runner_init(k210w_runner_t *r, const k210w_runner_config_t *cfg)
{
    memset(r, 0, sizeof *r);
    if (!cfg->backend || !cfg->write || cfg->max_frame < K210W_MIN_MAX_FRAME || !cfg->rx_enc || !cfg->rx_dec ||
        !cfg->tx_raw || !cfg->tx_enc || !cfg->input || !cfg->backend->load || !cfg->backend->infer)
        return -1;
    r->cfg = *cfg;
    if (cfg->packed) {
        r->caps |= K210W_CAP_INFLATE;
        r->modes |= K210W_MODE_ZLIB;
    }
    if (cfg->cache && k210s_caps_log2(cfg->cache)) {
        r->caps |= (uint16_t)(K210W_CAP_CACHE | (unsigned)k210s_caps_log2(cfg->cache) << K210W_CAP_CACHE_LOG2_SHIFT);
        r->modes |= K210W_MODE_KEEP | K210W_MODE_CACHED;
    }
    k210w_decoder_init(&r->rx, cfg->rx_enc, K210W_RX_ENC_CAP(cfg->max_frame), cfg->rx_dec, cfg->max_frame);
    r->model.input_bytes = -1;
    return 0;
}

void k210w_runner_feed(k210w_runner_t *r, const uint8_t *data, size_t n)
{
    k210w_decoder_feed(&r->rx, data, n, on_frame, r);
}

void k210w_runner_announce(k210w_runner_t *r)
{
    k210w_out_t o = payload(r);
    put_hello(r, &o);
    send(r, K210W_HELLO, K210W_FLAG_EVENT, next_event_seq(r), &o);
}

void k210w_runner_log(k210w_runner_t *r, uint8_t level, const char *text)
{
    size_t room = r->cfg.max_frame - K210W_OVERHEAD - 2u, n = strlen(text);
    k210w_out_t o = payload(r);
    k210w_put_u8(&o, level);
    k210w_put_str(&o, text, n < room ? n : room);
    send(r, K210W_LOG, K210W_FLAG_EVENT, next_event_seq(r), &o);
}

void k210w_runner_boot_note(k210w_runner_t *r, uint8_t level, const char *text)
{
    snprintf(r->boot_note, sizeof r->boot_note, "%s", text);
    r->boot_note_level = level;
    k210w_runner_log(r, level, r->boot_note);
}

int k210w_runner_load_boot_model(k210w_runner_t *r, const uint8_t *model, uint32_t size, const char *source,
                                 const k210w_io_t *io)
{
    const k210w_backend_t *b = r->cfg.backend;
    k210w_io_t got = *io;
    uint8_t digest[32];
    uint32_t version = k210w_kmodel_version(model, size);
    int err;
    unload_model(r);
    if (!version_supported(b, version)) {
        why_not(r, version);
        return K210W_E_UNSUPPORTED_KMODEL;
    }
    r->text[0] = 0;
    err = b->load(b->ctx, model, size, version, &got, r->text, sizeof r->text);
    if (err)
        return err;
    k210w_sha256(model, size, digest);
    set_model(r, version, size, digest, source, &got);
    return 0;
}

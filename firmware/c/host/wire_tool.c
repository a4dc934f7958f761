/* wire_tool: drives the C protocol codec from line commands on stdin, so tests can hold the C and
 * Python implementations to the same bytes (firmware/protocol/vectors.json).
 *
 *   E <TYPE> <flags> <seq> key=value...   build the message with the C builders -> frame hex
 *   D <frame hex>                         decode with the C frame decoder + parsers -> canonical
 *                                         line "<TYPE> <flags> <seq> key=value..." (or DROPPED /
 *                                         BADPAYLOAD)
 *   C <hex>   CRC-32      X <hex>  COBS encode      Y <hex>  COBS decode      S <hex>  SHA-256
 *
 * Canonical values: integers in decimal; bytes and strings in lowercase hex; tensors as
 * dtype:d0xd1x..., comma-separated; integer lists comma-separated; "-" for an empty value. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/crc32.h"
#include "../core/sha256.h"
#include "../core/wire.h"

#define MAX_LINE (1 << 20)
#define MAX_FRAME (1 << 16)

static const struct {
    const char *name;
    uint8_t type;
} TYPES[] = {
    {"HELLO_REQ", K210W_HELLO_REQ}, {"MODEL_INFO_REQ", K210W_MODEL_INFO_REQ}, {"LOAD_BEGIN", K210W_LOAD_BEGIN},
    {"LOAD_CHUNK", K210W_LOAD_CHUNK}, {"LOAD_COMMIT", K210W_LOAD_COMMIT}, {"INFER_CHUNK", K210W_INFER_CHUNK},
    {"REBOOT", K210W_REBOOT}, {"ACK", K210W_ACK}, {"HELLO", K210W_HELLO}, {"MODEL_INFO", K210W_MODEL_INFO},
    {"RESULT", K210W_RESULT}, {"ERROR", K210W_ERROR}, {"LOG", K210W_LOG},
};

static uint8_t bin[MAX_LINE / 2], bin2[MAX_LINE], raw[MAX_FRAME], enc[K210W_TX_ENC_CAP(MAX_FRAME)];
static uint8_t rx_enc[K210W_RX_ENC_CAP(MAX_FRAME)], rx_dec[MAX_FRAME];
static char line[MAX_LINE];

/* ---- hex ---- */

static void print_hex(const uint8_t *p, size_t n)
{
    size_t i;
    if (!n) {
        fputs("-", stdout);
        return;
    }
    for (i = 0; i < n; i++)
        printf("%02x", p[i]);
}

static long parse_hex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    if (!strcmp(s, "-"))
        return 0;
    while (s[0] && s[1]) {
        unsigned v;
        if (n >= cap || sscanf(s, "%2x", &v) != 1)
            return -1;
        out[n++] = (uint8_t)v;
        s += 2;
    }
    return s[0] ? -1 : (long)n;
}

/* ---- canonical key=value fields ---- */

typedef struct {
    char *keys[32];
    char *values[32];
    int n;
} fields_t;

static const char *field(const fields_t *f, const char *key)
{
    int i;
    for (i = 0; i < f->n; i++)
        if (!strcmp(f->keys[i], key))
            return f->values[i];
    fprintf(stderr, "wire_tool: missing field %s\n", key);
    exit(2);
}

static uint32_t num(const fields_t *f, const char *key)
{
    return (uint32_t)strtoul(field(f, key), NULL, 10);
}

/* A field the vectors leave out when it is 0 (HELLO caps, INFER_CHUNK mode), as k210wire does. */
static uint32_t num_or_zero(const fields_t *f, const char *key)
{
    int i;
    for (i = 0; i < f->n; i++)
        if (!strcmp(f->keys[i], key))
            return (uint32_t)strtoul(f->values[i], NULL, 10);
    return 0;
}

/* A string/bytes field: hex -> bytes in a static pool slot. */
static size_t bytes_field(const fields_t *f, const char *key, uint8_t *out, size_t cap)
{
    long n = parse_hex(field(f, key), out, cap);
    if (n < 0) {
        fprintf(stderr, "wire_tool: bad hex in %s\n", key);
        exit(2);
    }
    return (size_t)n;
}

static void tensors_field(const fields_t *f, const char *key, k210w_desc_t *d, uint8_t *count)
{
    const char *s = field(f, key);
    *count = 0;
    if (!strcmp(s, "-"))
        return;
    while (*s) {
        char *end;
        k210w_desc_t *t = &d[(*count)++];
        memset(t, 0, sizeof *t);
        t->dtype = (uint8_t)strtoul(s, &end, 10);
        s = end + 1; /* ':' */
        while (*s && *s != ',') {
            t->dims[t->ndim++] = (uint32_t)strtoul(s, &end, 10);
            s = *end == 'x' ? end + 1 : end;
        }
        if (*s == ',')
            s++;
    }
}

static void print_tensors(const k210w_desc_t *d, uint8_t count)
{
    uint8_t i, j;
    if (!count)
        fputs("-", stdout);
    for (i = 0; i < count; i++) {
        printf("%s%u:", i ? "," : "", d[i].dtype);
        for (j = 0; j < d[i].ndim; j++)
            printf("%s%lu", j ? "x" : "", (unsigned long)d[i].dims[j]);
    }
}

static void print_str(const char *key, k210w_str_t s)
{
    printf(" %s=", key);
    print_hex(s.ptr, s.len);
}

/* ---- E: build ---- */

static void encode(char *args)
{
    fields_t f;
    char *type_name = strtok(args, " "), *tok;
    uint8_t type = 0, flags = (uint8_t)strtoul(strtok(NULL, " "), NULL, 10);
    uint16_t seq = (uint16_t)strtoul(strtok(NULL, " "), NULL, 10);
    size_t i, n;
    k210w_out_t o;
    static uint8_t s1[256], s2[256], s3[256], sha[64];
    f.n = 0;
    while ((tok = strtok(NULL, " ")) != NULL && f.n < 32) {
        char *eq = strchr(tok, '=');
        if (!eq)
            exit(2);
        *eq = 0;
        f.keys[f.n] = tok;
        f.values[f.n++] = eq + 1;
    }
    for (i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
        if (!strcmp(TYPES[i].name, type_name))
            type = TYPES[i].type;
    k210w_out_init(&o, raw + K210W_HEADER_LEN, MAX_FRAME - K210W_OVERHEAD);
    switch (type) {
    case K210W_HELLO_REQ:
    case K210W_MODEL_INFO_REQ:
    case K210W_LOAD_COMMIT:
    case K210W_REBOOT:
        break;
    case K210W_HELLO: {
        uint8_t versions[255];
        uint8_t nv = 0;
        const char *s = field(&f, "kmodel_versions");
        size_t l1, l2, l3;
        if (strcmp(s, "-"))
            while (*s) {
                char *end;
                versions[nv++] = (uint8_t)strtoul(s, &end, 10);
                s = *end ? end + 1 : end;
            }
        l1 = bytes_field(&f, "firmware", s1, 255);
        l2 = bytes_field(&f, "fw_version", s2, 255);
        l3 = bytes_field(&f, "backend", s3, 255);
        s1[l1] = s2[l2] = s3[l3] = 0;
        k210w_put_hello(&o, num(&f, "max_frame"), num(&f, "rx_window"), num(&f, "nonce"), num(&f, "max_model"),
                        num(&f, "max_input"), num(&f, "rx_frames"), num(&f, "rx_dropped"), versions, nv,
                        (const char *)s1, (const char *)s2, (const char *)s3, (uint16_t)num_or_zero(&f, "caps"));
        break;
    }
    case K210W_MODEL_INFO: {
        k210w_io_t io;
        size_t l1 = bytes_field(&f, "source", s1, 255);
        s1[l1] = 0;
        bytes_field(&f, "sha256", sha, 32);
        tensors_field(&f, "inputs", io.inputs, &io.n_inputs);
        tensors_field(&f, "outputs", io.outputs, &io.n_outputs);
        k210w_put_model_info(&o, (int)num(&f, "loaded"), (uint8_t)num(&f, "kmodel_version"), num(&f, "size"), sha,
                             (const char *)s1, &io);
        break;
    }
    case K210W_LOAD_BEGIN: {
        k210w_io_t io;
        bytes_field(&f, "sha256", sha, 32);
        tensors_field(&f, "inputs", io.inputs, &io.n_inputs);
        tensors_field(&f, "outputs", io.outputs, &io.n_outputs);
        k210w_put_load_begin(&o, num(&f, "size"), sha, &io);
        break;
    }
    case K210W_LOAD_CHUNK:
        n = bytes_field(&f, "data", bin, sizeof bin);
        k210w_put_load_chunk(&o, num(&f, "offset"), bin, (uint32_t)n);
        break;
    case K210W_INFER_CHUNK:
        n = bytes_field(&f, "data", bin, sizeof bin);
        k210w_put_infer_chunk(&o, (uint16_t)num(&f, "req"), (uint16_t)num_or_zero(&f, "mode"), num(&f, "total"),
                              num(&f, "offset"), bin, (uint32_t)n);
        break;
    case K210W_ACK:
        k210w_put_ack(&o, (uint16_t)num(&f, "req"), num(&f, "next"));
        break;
    case K210W_RESULT:
        n = bytes_field(&f, "data", bin, sizeof bin);
        k210w_put_result_header(&o, (uint16_t)num(&f, "req"), (uint8_t)num(&f, "n_outputs"), num(&f, "micros"),
                                num(&f, "total"), num(&f, "offset"));
        k210w_put_bytes(&o, bin, n);
        break;
    case K210W_ERROR: {
        size_t l1 = bytes_field(&f, "text", s1, 255);
        s1[l1] = 0;
        k210w_put_error(&o, (uint16_t)num(&f, "code"), (uint16_t)num(&f, "req"), num(&f, "detail"),
                        (const char *)s1);
        break;
    }
    case K210W_LOG: {
        size_t l1 = bytes_field(&f, "text", s1, 255);
        s1[l1] = 0;
        k210w_put_log(&o, (uint8_t)num(&f, "level"), (const char *)s1);
        break;
    }
    default:
        puts("UNKNOWN_TYPE");
        return;
    }
    if (o.overflow) {
        puts("OVERFLOW");
        return;
    }
    n = k210w_frame_seal(raw, o.len, type, flags, seq, enc);
    print_hex(enc, n);
    putchar('\n');
}

/* ---- D: decode ---- */

static int decoded;

static void print_message(void *ctx, const uint8_t *frame, size_t len)
{
    k210w_header_t h;
    const uint8_t *p = frame + K210W_HEADER_LEN;
    size_t plen = len - K210W_HEADER_LEN, i;
    int bad = 0;
    const char *name = NULL;
    (void)ctx;
    decoded = 1;
    k210w_parse_header(frame, len, &h);
    for (i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
        if (TYPES[i].type == h.type)
            name = TYPES[i].name;
    if (!name) {
        puts("UNKNOWN_TYPE");
        return;
    }
    /* Each case prints nothing when its payload does not parse, so that prints only BADPAYLOAD. */
    switch (h.type) {
    case K210W_HELLO: {
        k210w_hello_t m;
        if ((bad = k210w_parse_hello(p, plen, &m)) != 0)
            break;
        printf("%s %u %u proto=%u max_frame=%lu rx_window=%lu nonce=%lu max_model=%lu max_input=%lu rx_frames=%lu "
               "rx_dropped=%lu kmodel_versions=",
               name, h.flags, h.seq, m.proto, (unsigned long)m.max_frame, (unsigned long)m.rx_window,
               (unsigned long)m.nonce, (unsigned long)m.max_model, (unsigned long)m.max_input,
               (unsigned long)m.rx_frames, (unsigned long)m.rx_dropped);
        if (!m.n_versions)
            fputs("-", stdout);
        for (i = 0; i < m.n_versions; i++)
            printf("%s%u", i ? "," : "", m.versions[i]);
        print_str("firmware", m.firmware);
        print_str("fw_version", m.fw_version);
        print_str("backend", m.backend);
        if (m.caps) /* absent = 0, as in k210wire's decode_message */
            printf(" caps=%u", m.caps);
        break;
    }
    case K210W_MODEL_INFO: {
        k210w_model_info_t m;
        if ((bad = k210w_parse_model_info(p, plen, &m)) != 0)
            break;
        printf("%s %u %u loaded=%u kmodel_version=%u size=%lu sha256=", name, h.flags, h.seq, m.loaded,
               m.kmodel_version, (unsigned long)m.size);
        print_hex(m.sha256, 32);
        print_str("source", m.source);
        fputs(" inputs=", stdout);
        print_tensors(m.io.inputs, m.io.n_inputs);
        fputs(" outputs=", stdout);
        print_tensors(m.io.outputs, m.io.n_outputs);
        break;
    }
    case K210W_LOAD_BEGIN: {
        k210w_load_begin_t m;
        if ((bad = k210w_parse_load_begin(p, plen, &m)) != 0)
            break;
        printf("%s %u %u size=%lu sha256=", name, h.flags, h.seq, (unsigned long)m.size);
        print_hex(m.sha256, 32);
        fputs(" inputs=", stdout);
        print_tensors(m.io.inputs, m.io.n_inputs);
        fputs(" outputs=", stdout);
        print_tensors(m.io.outputs, m.io.n_outputs);
        break;
    }
    case K210W_LOAD_CHUNK: {
        k210w_chunk_t m;
        if ((bad = k210w_parse_load_chunk(p, plen, &m)) != 0)
            break;
        printf("%s %u %u offset=%lu data=", name, h.flags, h.seq, (unsigned long)m.offset);
        print_hex(m.data, m.len);
        break;
    }
    case K210W_INFER_CHUNK: {
        k210w_chunk_t m;
        if ((bad = k210w_parse_infer_chunk(p, plen, &m)) != 0)
            break;
        printf("%s %u %u req=%u total=%lu offset=%lu data=", name, h.flags, h.seq, m.req, (unsigned long)m.total,
               (unsigned long)m.offset);
        print_hex(m.data, m.len);
        if (m.mode)
            printf(" mode=%u", m.mode);
        break;
    }
    case K210W_ACK: {
        k210w_ack_t m;
        if ((bad = k210w_parse_ack(p, plen, &m)) != 0)
            break;
        printf("%s %u %u req=%u next=%lu", name, h.flags, h.seq, m.req, (unsigned long)m.next);
        break;
    }
    case K210W_RESULT: {
        k210w_result_t m;
        if ((bad = k210w_parse_result(p, plen, &m)) != 0)
            break;
        printf("%s %u %u req=%u n_outputs=%u micros=%lu total=%lu offset=%lu data=", name, h.flags, h.seq, m.req,
               m.n_outputs, (unsigned long)m.micros, (unsigned long)m.total, (unsigned long)m.offset);
        print_hex(m.data, m.len);
        break;
    }
    case K210W_ERROR: {
        k210w_error_t m;
        if ((bad = k210w_parse_error(p, plen, &m)) != 0)
            break;
        printf("%s %u %u code=%u req=%u detail=%lu", name, h.flags, h.seq, m.code, m.req, (unsigned long)m.detail);
        print_str("text", m.text);
        break;
    }
    case K210W_LOG: {
        k210w_log_t m;
        if ((bad = k210w_parse_log(p, plen, &m)) != 0)
            break;
        printf("%s %u %u level=%u", name, h.flags, h.seq, m.level);
        print_str("text", m.text);
        break;
    }
    default:
        printf("%s %u %u", name, h.flags, h.seq);
        break;
    }
    puts(bad ? "BADPAYLOAD" : "");
}

static void decode(const char *hex)
{
    k210w_decoder_t d;
    long n = parse_hex(hex, bin, sizeof bin);
    if (n < 0) {
        puts("BADHEX");
        return;
    }
    decoded = 0;
    k210w_decoder_init(&d, rx_enc, sizeof rx_enc, rx_dec, sizeof rx_dec);
    k210w_decoder_feed(&d, bin, (size_t)n, print_message, NULL);
    if (!decoded)
        puts("DROPPED");
}

int main(void)
{
    while (fgets(line, sizeof line, stdin)) {
        char *arg;
        long n;
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0])
            continue;
        arg = line[1] == ' ' ? line + 2 : line + 1;
        switch (line[0]) {
        case 'E':
            encode(arg);
            break;
        case 'D':
            decode(arg);
            break;
        case 'C':
            n = parse_hex(arg, bin, sizeof bin);
            printf("%08lx\n", (unsigned long)k210w_crc32(0, bin, n < 0 ? 0 : (size_t)n));
            break;
        case 'X':
            n = parse_hex(arg, bin, sizeof bin);
            print_hex(bin2, k210w_cobs_encode(bin, n < 0 ? 0 : (size_t)n, bin2));
            putchar('\n');
            break;
        case 'Y':
            n = parse_hex(arg, bin, sizeof bin);
            n = k210w_cobs_decode(bin, n < 0 ? 0 : (size_t)n, bin2, sizeof bin2);
            if (n < 0)
                puts("ERR");
            else {
                print_hex(bin2, (size_t)n);
                putchar('\n');
            }
            break;
        case 'S': {
            uint8_t digest[32];
            n = parse_hex(arg, bin, sizeof bin);
            k210w_sha256(bin, n < 0 ? 0 : (size_t)n, digest);
            print_hex(digest, 32);
            putchar('\n');
            break;
        }
        default:
            puts("UNKNOWN_COMMAND");
        }
        fflush(stdout);
    }
    return 0;
}

/* The k210-deploy wire protocol, version 1 (firmware/PROTOCOL.md): constants, frame writer and
 * decoder, and the payload codec for every message type. Portable C99, no allocation.
 *
 * Frame on the wire:  COBS( header | payload | CRC-32 ) 0x00
 *   header = u8 version, u8 type, u8 flags, u8 reserved, u16 seq (little-endian)
 *   CRC-32 of header+payload (ISO-HDLC), u32 little-endian */
#ifndef K210W_WIRE_H
#define K210W_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "cobs.h"

#define K210W_PROTOCOL_VERSION 1u
#define K210W_HEADER_LEN 6u
#define K210W_CRC_LEN 4u
#define K210W_OVERHEAD (K210W_HEADER_LEN + K210W_CRC_LEN)
#define K210W_MIN_MAX_FRAME 128u
#define K210W_MAX_NDIM 8u
#define K210W_MAX_TENSORS 8u
#define K210W_MAX_STR 255u

/* Buffer sizes for a given max frame (decoded bytes: header + payload + CRC). */
#define K210W_RX_ENC_CAP(max_frame) K210W_COBS_MAX(max_frame)
#define K210W_TX_ENC_CAP(max_frame) (K210W_COBS_MAX(max_frame) + 1u)

enum k210w_type {
    K210W_HELLO_REQ = 0x01,
    K210W_MODEL_INFO_REQ = 0x02,
    K210W_LOAD_BEGIN = 0x03,
    K210W_LOAD_CHUNK = 0x04,
    K210W_LOAD_COMMIT = 0x05,
    K210W_INFER_CHUNK = 0x06,
    K210W_REBOOT = 0x07,
    K210W_ACK = 0x80,
    K210W_HELLO = 0x81,
    K210W_MODEL_INFO = 0x82,
    K210W_RESULT = 0x83,
    K210W_ERROR = 0x84,
    K210W_LOG = 0x85
};

#define K210W_FLAG_REPLY 0x01u
#define K210W_FLAG_EVENT 0x02u

enum k210w_error {
    K210W_E_BAD_VERSION = 1,
    K210W_E_UNKNOWN_TYPE = 2,
    K210W_E_BAD_PAYLOAD = 3,
    K210W_E_NO_MODEL = 4,
    K210W_E_GAP = 5,
    K210W_E_STALE = 6,
    K210W_E_TOO_BIG = 7,
    K210W_E_BAD_SIZE = 8,
    K210W_E_NOT_LOADING = 9,
    K210W_E_HASH_MISMATCH = 10,
    K210W_E_UNSUPPORTED_KMODEL = 11,
    K210W_E_LOAD_FAILED = 12,
    K210W_E_INFER_FAILED = 13,
    K210W_E_STORAGE = 14,
    K210W_E_UNSUPPORTED = 15,
    K210W_E_INTERNAL = 16,
    K210W_E_NOT_CACHED = 17 /* detail 0: not kept, 1: its entry failed the hash check and is dropped */
};

/* HELLO caps (u16 at payload offset 2, PROTOCOL.md 4.1): what else the board takes. */
#define K210W_CAP_INFLATE 0x01u /* INFER mode ZLIB */
#define K210W_CAP_CACHE 0x02u   /* INFER modes KEEP and CACHED */
#define K210W_CAP_CACHE_LOG2_SHIFT 8u /* bits 8..15: floor(log2(bytes of sample cache)) */

/* INFER_CHUNK mode (u16 at payload offset 2): what the chunk stream holds; 0 = the tensor itself. */
#define K210W_MODE_ZLIB 0x01u   /* the tensor as a zlib (RFC 1950) stream */
#define K210W_MODE_KEEP 0x02u   /* SHA-256 of the tensor, then the tensor (or its zlib stream): keep it */
#define K210W_MODE_CACHED 0x04u /* only the SHA-256 of a tensor kept before */
#define K210W_SHA_LEN 32u

/* nncase datatype codes */
enum k210w_dtype {
    K210W_DT_INT8 = 0,
    K210W_DT_INT16 = 1,
    K210W_DT_INT32 = 2,
    K210W_DT_INT64 = 3,
    K210W_DT_UINT8 = 4,
    K210W_DT_UINT16 = 5,
    K210W_DT_UINT32 = 6,
    K210W_DT_UINT64 = 7,
    K210W_DT_FLOAT16 = 8,
    K210W_DT_FLOAT32 = 9,
    K210W_DT_FLOAT64 = 10,
    K210W_DT_BFLOAT16 = 11
};

/* Fixed payload parts, bytes. */
#define K210W_HELLO_LEN 32u
#define K210W_MODEL_INFO_LEN 40u
#define K210W_LOAD_BEGIN_LEN 38u
#define K210W_LOAD_CHUNK_LEN 4u
#define K210W_INFER_CHUNK_LEN 12u
#define K210W_ACK_LEN 8u
#define K210W_RESULT_LEN 16u
#define K210W_ERROR_LEN 8u
#define K210W_RECORD_LEN 8u

typedef struct {
    uint8_t dtype;
    uint8_t ndim;
    uint32_t dims[K210W_MAX_NDIM];
} k210w_desc_t;

typedef struct {
    uint8_t n_inputs;
    uint8_t n_outputs;
    k210w_desc_t inputs[K210W_MAX_TENSORS];
    k210w_desc_t outputs[K210W_MAX_TENSORS];
} k210w_io_t;

/* A string inside a payload: not NUL-terminated. */
typedef struct {
    const uint8_t *ptr;
    uint8_t len;
} k210w_str_t;

typedef struct {
    uint8_t version, type, flags;
    uint16_t seq;
} k210w_header_t;

typedef struct {
    uint8_t proto;
    uint16_t caps;
    uint32_t max_frame, rx_window, nonce, max_model, max_input, rx_frames, rx_dropped;
    uint8_t n_versions;
    const uint8_t *versions;
    k210w_str_t firmware, fw_version, backend;
} k210w_hello_t;

typedef struct {
    uint8_t loaded, kmodel_version;
    uint32_t size;
    uint8_t sha256[32];
    k210w_str_t source;
    k210w_io_t io;
} k210w_model_info_t;

typedef struct {
    uint32_t size;
    uint8_t sha256[32];
    k210w_io_t io;
} k210w_load_begin_t;

typedef struct {
    uint16_t req;     /* INFER_CHUNK only */
    uint16_t mode;    /* INFER_CHUNK only: K210W_MODE_* bits */
    uint32_t total;   /* INFER_CHUNK only */
    uint32_t offset;
    const uint8_t *data;
    uint32_t len;
} k210w_chunk_t;

typedef struct {
    uint16_t req;
    uint32_t next;
} k210w_ack_t;

typedef struct {
    uint16_t req;
    uint8_t n_outputs;
    uint32_t micros, total, offset;
    const uint8_t *data;
    uint32_t len;
} k210w_result_t;

typedef struct {
    uint16_t code, req;
    uint32_t detail;
    k210w_str_t text;
} k210w_error_t;

typedef struct {
    uint8_t level;
    k210w_str_t text;
} k210w_log_t;

/* ---- writer: payloads are put into a bounded buffer; overflow is sticky ---- */
typedef struct {
    uint8_t *buf;
    size_t cap, len;
    int overflow;
} k210w_out_t;

void k210w_out_init(k210w_out_t *o, uint8_t *buf, size_t cap);
void k210w_put_u8(k210w_out_t *o, uint8_t v);
void k210w_put_u16(k210w_out_t *o, uint16_t v);
void k210w_put_u32(k210w_out_t *o, uint32_t v);
void k210w_put_bytes(k210w_out_t *o, const void *data, size_t len);
void k210w_put_str(k210w_out_t *o, const char *s, size_t len); /* truncated to 255 bytes */
void k210w_put_desc(k210w_out_t *o, const k210w_desc_t *d);

void k210w_put_hello(k210w_out_t *o, uint32_t max_frame, uint32_t rx_window, uint32_t nonce, uint32_t max_model,
                     uint32_t max_input, uint32_t rx_frames, uint32_t rx_dropped, const uint8_t *versions,
                     uint8_t n_versions, const char *firmware, const char *fw_version, const char *backend,
                     uint16_t caps);
void k210w_put_model_info(k210w_out_t *o, int loaded, uint8_t version, uint32_t size, const uint8_t sha256[32],
                          const char *source, const k210w_io_t *io);
void k210w_put_load_begin(k210w_out_t *o, uint32_t size, const uint8_t sha256[32], const k210w_io_t *io);
void k210w_put_load_chunk(k210w_out_t *o, uint32_t offset, const uint8_t *data, uint32_t len);
void k210w_put_infer_chunk(k210w_out_t *o, uint16_t req, uint16_t mode, uint32_t total, uint32_t offset,
                           const uint8_t *data, uint32_t len);
void k210w_put_ack(k210w_out_t *o, uint16_t req, uint32_t next);
void k210w_put_result_header(k210w_out_t *o, uint16_t req, uint8_t n_outputs, uint32_t micros, uint32_t total,
                             uint32_t offset);
void k210w_put_error(k210w_out_t *o, uint16_t code, uint16_t req, uint32_t detail, const char *text);
void k210w_put_log(k210w_out_t *o, uint8_t level, const char *text);
void k210w_put_record_header(k210w_out_t *o, const k210w_desc_t *d, uint32_t nbytes);
size_t k210w_record_header_len(const k210w_desc_t *d);

/* ---- parsers: 0 on success, -1 if the payload is malformed (truncated, too many dims/tensors) ---- */
int k210w_parse_header(const uint8_t *frame, size_t len, k210w_header_t *h);
int k210w_parse_hello(const uint8_t *p, size_t len, k210w_hello_t *m);
int k210w_parse_model_info(const uint8_t *p, size_t len, k210w_model_info_t *m);
int k210w_parse_load_begin(const uint8_t *p, size_t len, k210w_load_begin_t *m);
int k210w_parse_load_chunk(const uint8_t *p, size_t len, k210w_chunk_t *m);
int k210w_parse_infer_chunk(const uint8_t *p, size_t len, k210w_chunk_t *m);
int k210w_parse_ack(const uint8_t *p, size_t len, k210w_ack_t *m);
int k210w_parse_result(const uint8_t *p, size_t len, k210w_result_t *m);
int k210w_parse_error(const uint8_t *p, size_t len, k210w_error_t *m);
int k210w_parse_log(const uint8_t *p, size_t len, k210w_log_t *m);
/* A parsed record of a reassembled RESULT blob; returns bytes consumed or -1. */
long k210w_parse_record(const uint8_t *p, size_t len, k210w_desc_t *d, const uint8_t **data, uint32_t *nbytes);

/* Bytes of a dense tensor, or -1 for an unknown dtype / overflow. */
long long k210w_tensor_nbytes(const k210w_desc_t *d);
/* kmodel version from its first bytes: 5/4 ("LDMK" + u32), 3 (u32 3 first), 0 unknown. */
uint32_t k210w_kmodel_version(const uint8_t *head, size_t len);

/* ---- frames ---- */

/* raw holds header room + payload_len bytes of payload at raw[K210W_HEADER_LEN] and room for the
 * CRC; enc has K210W_TX_ENC_CAP(frame) bytes. Returns the bytes to send (COBS + delimiter). */
size_t k210w_frame_seal(uint8_t *raw, size_t payload_len, uint8_t type, uint8_t flags, uint16_t seq, uint8_t *enc);

typedef void (*k210w_frame_fn)(void *ctx, const uint8_t *frame, size_t len);

/* Streaming receiver: feed bytes as they come, get complete frames (header + payload, CRC checked
 * and stripped). Garbage, bad CRC, malformed and over-long frames are dropped and counted. */
typedef struct {
    uint8_t *enc;
    size_t enc_cap;
    uint8_t *dec;
    size_t dec_cap;
    size_t n;
    int skipping;
    uint32_t frames, bad_crc, bad_cobs, overruns, runts;
} k210w_decoder_t;

/* enc: K210W_RX_ENC_CAP(max_frame) bytes, dec: max_frame bytes. */
void k210w_decoder_init(k210w_decoder_t *d, uint8_t *enc, size_t enc_cap, uint8_t *dec, size_t dec_cap);
void k210w_decoder_feed(k210w_decoder_t *d, const uint8_t *data, size_t n, k210w_frame_fn fn, void *ctx);
uint32_t k210w_decoder_dropped(const k210w_decoder_t *d);

#endif

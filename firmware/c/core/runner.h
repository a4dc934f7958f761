/* The board side of the protocol (firmware/PROTOCOL.md, "Board behaviour"): a dispatcher over a
 * model backend. The same rules as firmware/maixpy/k210runner.py. Portable C99: the board glue
 * owns every buffer (static arrays), gives a byte writer and a backend, and feeds received bytes. */
#ifndef K210W_RUNNER_H
#define K210W_RUNNER_H

#include <stddef.h>
#include <stdint.h>

#include "samplestore.h"
#include "wire.h"

typedef struct {
    k210w_desc_t desc;
    const uint8_t *data; /* owned by the backend, valid until its next infer/unload */
    uint32_t nbytes;
} k210w_output_t;

/* What runs the model. load/infer return 0 or a K210W_E_* code with a message in err. */
typedef struct {
    const char *name;
    const uint8_t *kmodel_versions;
    uint8_t n_kmodel_versions;
    void *ctx;
    /* Where LOAD_MODEL puts `size` bytes (it stays the model's home once loaded); NULL: too big.
     * The function pointer itself may be NULL: this board has no LOAD_MODEL. */
    uint8_t *(*model_buffer)(void *ctx, uint32_t size);
    /* io: descriptors from LOAD_BEGIN or the board config; the backend may fill or correct them. */
    int (*load)(void *ctx, const uint8_t *model, uint32_t size, uint32_t version, k210w_io_t *io, char *err,
                size_t err_cap);
    void (*unload)(void *ctx);
    int (*infer)(void *ctx, const uint8_t *input, uint32_t len, k210w_output_t outputs[K210W_MAX_TENSORS],
                 uint8_t *n_outputs, uint32_t *micros, char *err, size_t err_cap);
} k210w_backend_t;

typedef struct {
    const k210w_backend_t *backend;
    void (*write)(void *ctx, const uint8_t *data, size_t len);
    void *write_ctx;
    void (*reboot)(void *ctx); /* optional: REBOOT is acknowledged, then this is called */
    void *reboot_ctx;
    uint32_t max_frame; /* >= K210W_MIN_MAX_FRAME */
    uint32_t rx_window; /* bytes the board buffers while busy */
    uint32_t max_model;
    uint32_t max_input;
    uint32_t nonce;
    const char *firmware, *fw_version;
    /* Buffers, sized for max_frame / max_input: */
    uint8_t *rx_enc; /* K210W_RX_ENC_CAP(max_frame) */
    uint8_t *rx_dec; /* max_frame */
    uint8_t *tx_raw; /* max_frame */
    uint8_t *tx_enc; /* K210W_TX_ENC_CAP(max_frame) */
    uint8_t *input;  /* max_input */
    /* INFER modes (PROTOCOL.md 4.1), both optional: */
    uint8_t *packed;       /* max_input bytes where a ZLIB stream lands; NULL: no mode ZLIB (no CAP_INFLATE) */
    k210s_store_t *cache;  /* an opened sample store; NULL: no modes KEEP/CACHED (no CAP_CACHE) */
} k210w_runner_config_t;

enum { K210W_IDLE = 0, K210W_RECEIVING = 1, K210W_DONE = 2 };

typedef struct {
    k210w_runner_config_t cfg;
    k210w_decoder_t rx;
    uint16_t caps;  /* what HELLO announces */
    uint16_t modes; /* the INFER modes served */
    uint16_t event_seq;
    uint32_t ignored, abandoned;
    char text[160]; /* ERROR/LOG text being built */
    char boot_note[160]; /* a boot problem, repeated as LOG after every HELLO reply ("" if none) */
    uint8_t boot_note_level;

    struct {
        int loaded;
        uint32_t version, size;
        uint8_t sha256[32];
        char source[48];
        k210w_io_t io;
        long long input_bytes; /* -1: not known, any size up to max_input */
    } model;

    struct {
        int state;
        uint32_t size, expected, version;
        uint8_t sha256[32];
        uint8_t *buf;
        k210w_io_t io;
    } load;

    struct {
        int state;
        uint16_t req, mode;
        uint32_t total, expected, micros;
        uint8_t sha256[32]; /* KEEP, CACHED: the hash at the stream's start */
        uint8_t n_outputs;
        k210w_output_t outputs[K210W_MAX_TENSORS];
    } infer;
} k210w_runner_t;

/* 0, or -1 if the config is unusable (missing buffer, max_frame too small). */
int k210w_runner_init(k210w_runner_t *r, const k210w_runner_config_t *cfg);
void k210w_runner_feed(k210w_runner_t *r, const uint8_t *data, size_t n);
/* The unsolicited HELLO a board sends when it boots. */
void k210w_runner_announce(k210w_runner_t *r);
void k210w_runner_log(k210w_runner_t *r, uint8_t level, const char *text);
/* Log a boot problem now and again after every HELLO reply (a host may not listen at boot). */
void k210w_runner_boot_note(k210w_runner_t *r, uint8_t level, const char *text);
/* The model the board boots with: already in the backend's model buffer (read from flash or a
 * file). Returns 0 or a K210W_E_* code (the message is in r->text). */
int k210w_runner_load_boot_model(k210w_runner_t *r, const uint8_t *model, uint32_t size, const char *source,
                                 const k210w_io_t *io);

#endif

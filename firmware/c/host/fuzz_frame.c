/* libFuzzer target: the C frame decoder, every payload parser, and the runner's dispatcher.
 *
 *   clang -fsanitize=fuzzer,address,undefined ... (see firmware/c/Makefile, target `fuzz`)
 *
 * Besides "no crash, no sanitizer report" it checks properties, aborting when one fails:
 * COBS round-trips any input; every frame the decoder delivers has a valid CRC and fits; and the
 * runner, fed the same bytes, never writes a frame the decoder would reject.
 *
 * Random bytes rarely carry a valid CRC, so when the first byte is odd the rest is read as records
 * [u8 payload length][u8 type][payload] that are framed properly (CRC and COBS) before the runner
 * sees them: that drives the dispatcher through LOAD and INFER states. The runner takes every INFER
 * mode: ZLIB streams go through core/inflate.c, KEEP and CACHED through a sample store in a small
 * RAM "flash" (kept across inputs, so later inputs find entries that earlier ones wrote; when bit 1 of
 * the first byte is set, the second byte's bits flip a byte of it first: a flash that went bad). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../core/cobs.h"
#include "../core/crc32.h"
#include "../core/runner.h"
#include "../core/wire.h"
#include "arith_backend.h"

#define MAX_FRAME 512u
#define MAX_INPUT 2048u
#define MAX_MODEL 8192u

static uint8_t rx_enc[K210W_RX_ENC_CAP(MAX_FRAME)], rx_dec[MAX_FRAME];
static uint8_t tx_raw[MAX_FRAME], tx_enc[K210W_TX_ENC_CAP(MAX_FRAME)], input[MAX_INPUT];
static uint8_t store[MAX_MODEL], out0[MAX_INPUT];
static uint8_t check_enc[K210W_RX_ENC_CAP(MAX_FRAME)], check_dec[MAX_FRAME];
static uint8_t cobs_buf[K210W_COBS_MAX(4096u)], cobs_back[4096];
static uint8_t frame_raw[MAX_FRAME], frame_enc[K210W_TX_ENC_CAP(MAX_FRAME)];
static uint8_t packed[MAX_INPUT];

/* The sample store's region: 8 sectors of 512 bytes of RAM with NOR semantics. */
#define FLASH_SECTOR 512u
#define FLASH_SIZE (8u * FLASH_SECTOR)
static uint8_t flash_mem[FLASH_SIZE];
static k210s_slot_t slots[16];
static k210s_store_t sample_store;

static int ram_read(void *ctx, uint32_t addr, uint8_t *buf, uint32_t n)
{
    (void)ctx;
    if (addr > FLASH_SIZE || n > FLASH_SIZE - addr)
        abort(); /* the store must stay inside its region */
    memcpy(buf, flash_mem + addr, n);
    return 0;
}

static int ram_program(void *ctx, uint32_t addr, const uint8_t *data, uint32_t n)
{
    uint32_t i;
    (void)ctx;
    if (addr > FLASH_SIZE || n > FLASH_SIZE - addr)
        abort();
    for (i = 0; i < n; i++)
        flash_mem[addr + i] &= data[i];
    return 0;
}

static int ram_erase(void *ctx, uint32_t addr)
{
    (void)ctx;
    if (addr % FLASH_SECTOR || addr >= FLASH_SIZE)
        abort();
    memset(flash_mem + addr, 0xFF, FLASH_SECTOR);
    return 0;
}

static const k210s_flash_t ram_flash = {NULL, FLASH_SIZE, FLASH_SECTOR, ram_read, ram_program, ram_erase};

static void parse_everything(void *ctx, const uint8_t *frame, size_t len)
{
    const uint8_t *p = frame + K210W_HEADER_LEN;
    size_t plen = len - K210W_HEADER_LEN;
    k210w_header_t h;
    union {
        k210w_hello_t hello;
        k210w_model_info_t info;
        k210w_load_begin_t begin;
        k210w_chunk_t chunk;
        k210w_ack_t ack;
        k210w_result_t result;
        k210w_error_t error;
        k210w_log_t log;
    } m;
    k210w_desc_t d;
    const uint8_t *data;
    uint32_t nbytes;
    long used;
    (void)ctx;
    if (len < K210W_HEADER_LEN || len > MAX_FRAME - K210W_CRC_LEN || k210w_parse_header(frame, len, &h) != 0)
        abort(); /* the decoder promised a whole header and a frame that fits */
    k210w_parse_hello(p, plen, &m.hello);
    k210w_parse_model_info(p, plen, &m.info);
    k210w_parse_load_begin(p, plen, &m.begin);
    k210w_parse_load_chunk(p, plen, &m.chunk);
    k210w_parse_infer_chunk(p, plen, &m.chunk);
    k210w_parse_ack(p, plen, &m.ack);
    k210w_parse_result(p, plen, &m.result);
    k210w_parse_error(p, plen, &m.error);
    k210w_parse_log(p, plen, &m.log);
    while (plen && (used = k210w_parse_record(p, plen, &d, &data, &nbytes)) > 0) {
        k210w_tensor_nbytes(&d);
        p += used;
        plen -= (size_t)used;
    }
}

static void count_frame(void *ctx, const uint8_t *frame, size_t len)
{
    (void)frame;
    (void)len;
    ++*(unsigned *)ctx;
}

/* Every frame the runner writes must decode as exactly one good frame. */
static void check_reply(void *ctx, const uint8_t *data, size_t len)
{
    k210w_decoder_t d;
    unsigned frames = 0;
    (void)ctx;
    k210w_decoder_init(&d, check_enc, sizeof check_enc, check_dec, sizeof check_dec);
    k210w_decoder_feed(&d, data, len, count_frame, &frames);
    if (frames != 1 || k210w_decoder_dropped(&d) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static k210w_runner_t runner;
    static arith_backend_t arith;
    static k210w_backend_t backend;
    k210w_runner_config_t cfg;
    k210w_decoder_t d;
    size_t at, step;

    /* COBS round trip of the raw input. */
    if (size <= sizeof cobs_back) {
        size_t n = k210w_cobs_encode(data, size, cobs_buf);
        long back = k210w_cobs_decode(cobs_buf, n, cobs_back, sizeof cobs_back);
        if (n > K210W_COBS_MAX(size) || memchr(cobs_buf, 0, n) || back != (long)size ||
            memcmp(cobs_back, data, size) != 0)
            abort();
    }

    /* The decoder, fed in uneven pieces (the first byte picks the piece size). */
    k210w_decoder_init(&d, rx_enc, sizeof rx_enc, rx_dec, sizeof rx_dec);
    step = size ? (size_t)data[0] % 61u + 1u : 1u;
    for (at = 0; at < size; at += step)
        k210w_decoder_feed(&d, data + at, size - at < step ? size - at : step, parse_everything, NULL);

    /* The runner, on the arithmetic backend, fed the same bytes. */
    memset(&arith, 0, sizeof arith);
    arith.store = store;
    arith.store_cap = sizeof store;
    arith.out0 = out0;
    arith.out0_cap = sizeof out0;
    arith_backend_init(&backend, &arith);
    memset(&cfg, 0, sizeof cfg);
    cfg.backend = &backend;
    cfg.write = check_reply;
    cfg.max_frame = MAX_FRAME;
    cfg.rx_window = 4096;
    cfg.max_model = MAX_MODEL;
    cfg.max_input = MAX_INPUT;
    cfg.nonce = 1;
    cfg.firmware = "fuzz";
    cfg.fw_version = "0";
    cfg.rx_enc = rx_enc;
    cfg.rx_dec = rx_dec;
    cfg.tx_raw = tx_raw;
    cfg.tx_enc = tx_enc;
    cfg.input = input;
    cfg.packed = packed;
    if (size >= 2 && (data[0] & 2u))
        flash_mem[(size_t)data[1] * 17u % FLASH_SIZE] ^= (uint8_t)(data[1] | 1u);
    if (k210s_open(&sample_store, &ram_flash, slots, sizeof slots / sizeof slots[0], input, sizeof input) != 0)
        abort();
    cfg.cache = &sample_store;
    if (k210w_runner_init(&runner, &cfg) != 0)
        abort();
    if (size && (data[0] & 1u)) {
        uint16_t seq = 0;
        at = 1;
        while (at + 2 <= size) {
            size_t plen = data[at], n;
            uint8_t type = data[at + 1];
            at += 2;
            if (plen > size - at)
                plen = size - at;
            memcpy(frame_raw + K210W_HEADER_LEN, data + at, plen);
            n = k210w_frame_seal(frame_raw, plen, type, 0, seq++, frame_enc);
            k210w_runner_feed(&runner, frame_enc, n);
            at += plen;
        }
    } else {
        k210w_runner_feed(&runner, data, size);
    }
    return 0;
}

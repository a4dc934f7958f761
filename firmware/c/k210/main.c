/* k210_runner: the C runner on a K210 (Kendryte standalone SDK, nncase 1.9 K210 runtime).
 *
 * UART1 on two board pins (a USB-serial adapter) carries the protocol; bytes arrive through the
 * UART RX interrupt into a ring buffer, so nothing is lost while the KPU runs. The kmodel comes
 * from SPI flash at K210_FLASH_MODEL_ADDR (if K210_FLASH_MODEL_SIZE > 0) or from LOAD_MODEL into
 * RAM; kpu_load_kmodel / kpu_run_kmodel / kpu_get_output run it and mcycle times it.
 *
 * INFER modes (PROTOCOL.md 4.1): ZLIB streams are inflated by core/inflate.c (K210_INFLATE, on by
 * default: a second K210_MAX_INPUT buffer); with K210_CACHE_FLASH_SIZE > 0 the sample cache
 * (core/samplestore.h) lives in SPI flash at K210_CACHE_FLASH_ADDR, through the w25qxx driver. */
#include <stdint.h>
#include <string.h>

#include "../core/runner.h"
#include "sdk_api.h"

#ifndef K210_UART_TX_PIN
#define K210_UART_TX_PIN 10 /* to the adapter's RX */
#endif
#ifndef K210_UART_RX_PIN
#define K210_UART_RX_PIN 11 /* to the adapter's TX */
#endif
#ifndef K210_BAUD
#define K210_BAUD 1500000u
#endif
#ifndef K210_MAX_FRAME
#define K210_MAX_FRAME 4096u
#endif
#ifndef K210_RX_RING
#define K210_RX_RING 16384u /* power of two */
#endif
#ifndef K210_MAX_INPUT
#define K210_MAX_INPUT (512u * 1024u)
#endif
#ifndef K210_MODEL_BUF_SIZE
#define K210_MODEL_BUF_SIZE (3u * 1024u * 1024u)
#endif
#ifndef K210_FLASH_MODEL_ADDR
#define K210_FLASH_MODEL_ADDR 0x300000u
#endif
#ifndef K210_FLASH_MODEL_SIZE
#define K210_FLASH_MODEL_SIZE 0u /* bytes of the kmodel flashed at K210_FLASH_MODEL_ADDR; 0: none */
#endif
#ifndef K210_INFLATE
#define K210_INFLATE 1 /* serve INFER mode ZLIB */
#endif
/* The sample cache's flash region: the top 2 MiB of a 16 MiB flash, clear of the firmware (from 0) and of a
 * flashed model (0x300000 or 0xA00000, up to K210_MODEL_BUF_SIZE). 0 bytes: no cache, no CACHE cap. */
#ifndef K210_CACHE_FLASH_ADDR
#define K210_CACHE_FLASH_ADDR 0xE00000u
#endif
#ifndef K210_CACHE_FLASH_SIZE
#define K210_CACHE_FLASH_SIZE 0u
#endif
#ifndef K210_CACHE_SLOTS
#define K210_CACHE_SLOTS (K210_CACHE_FLASH_SIZE / 256u) /* 12 bytes of RAM each: 96 KiB for 2 MiB */
#endif
#define K210_FLASH_CHIP_SIZE 0x1000000u
#define K210_FLASH_SECTOR 4096u  /* w25qxx_sector_erase's unit */
#define K210_FIRMWARE_END 0x300000u /* the firmware image (flashed at 0) ends below this */
#ifndef K210_KPU_DMA_CHANNEL
#define K210_KPU_DMA_CHANNEL DMAC_CHANNEL5
#endif

#ifndef K210_STACK_SIZE
#define K210_STACK_SIZE 16384u /* the linker must give main() at least this; checked by tests/test_c_cross.py */
#endif

#define UART_CHANNEL UART_DEVICE_1
/* The K210 maps its SRAM twice: cached at 0x80000000 and uncached at 0x40000000. The KPU's DMA reads
 * memory directly, so it is given the uncached alias of a buffer the CPU wrote (as CanMV does): a
 * conv-first kmodel v3 is DMA'd from the address passed to kpu_run_kmodel. */
#define K210_UNCACHED(p) ((const uint8_t *)((uintptr_t)(p) - 0x40000000u))

/* ---- UART: interrupt-fed RX ring, blocking TX ---- */

static uint8_t rx_ring[K210_RX_RING];
static volatile uint32_t rx_head, rx_tail; /* head: written by the ISR, tail: by the main loop */

static int on_uart_rx(void *ctx)
{
    char c[16];
    int n, i;
    (void)ctx;
    while ((n = uart_receive_data(UART_CHANNEL, c, sizeof c)) > 0)
        for (i = 0; i < n; i++) {
            if (rx_head - rx_tail < K210_RX_RING) /* full: drop, the host resends the frame */
                rx_ring[rx_head++ & (K210_RX_RING - 1u)] = (uint8_t)c[i];
        }
    return 0;
}

static void uart_write(void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    uart_send_data(UART_CHANNEL, (const char *)data, len);
}

static void reboot(void *ctx)
{
    (void)ctx;
    msleep(10); /* let the ACK leave the TX FIFO */
    sysctl_reset(SYSCTL_RESET_SOC);
}

/* ---- the KPU backend ---- */

static uint8_t model_buf[K210_MODEL_BUF_SIZE] __attribute__((aligned(128)));
static kpu_model_context_t kpu_ctx;
static int kpu_loaded;
static volatile int kpu_done;
static k210w_io_t kpu_io;
static const uint8_t kmodel_versions[] = {3, 4, 5};

static uint8_t *kpu_model_buffer(void *ctx, uint32_t size)
{
    (void)ctx;
    return size <= sizeof model_buf ? model_buf : NULL;
}

static void copy_text(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

static void kpu_unload(void *ctx)
{
    (void)ctx;
    if (kpu_loaded)
        kpu_model_free(&kpu_ctx);
    kpu_loaded = 0;
}

static int kpu_load(void *ctx, const uint8_t *model, uint32_t size, uint32_t version, k210w_io_t *io, char *err,
                    size_t err_cap)
{
    (void)size;
    (void)version;
    kpu_unload(ctx);
    if (kpu_load_kmodel(&kpu_ctx, model) != 0) {
        copy_text(err, err_cap, "kpu_load_kmodel refused the model (version, runtime or memory)");
        return K210W_E_LOAD_FAILED;
    }
    kpu_loaded = 1;
    kpu_io = *io; /* the runtime does not report dtypes: keep what the host or config said */
    return 0;
}

static void on_kpu_done(void *userdata)
{
    (void)userdata;
    kpu_done = 1;
}

static int kpu_infer(void *ctx, const uint8_t *input, uint32_t len, k210w_output_t outputs[K210W_MAX_TENSORS],
                     uint8_t *n_outputs, uint32_t *micros, char *err, size_t err_cap)
{
    uint64_t start, cycles;
    uint32_t i, count = kpu_io.n_outputs ? kpu_io.n_outputs : 1u; /* unknown outputs: only output 0 */
    uint32_t mhz = sysctl_clock_get_freq(SYSCTL_CLOCK_CPU) / 1000000u;
    (void)ctx;
    (void)len;
    kpu_done = 0;
    start = read_cycle();
    if (kpu_run_kmodel(&kpu_ctx, K210_UNCACHED(input), K210_KPU_DMA_CHANNEL, on_kpu_done, NULL) != 0) {
        copy_text(err, err_cap, "kpu_run_kmodel failed");
        return K210W_E_INFER_FAILED;
    }
    while (!kpu_done)
        ;
    cycles = read_cycle() - start;
    *micros = (uint32_t)(cycles / (mhz ? mhz : 1u));
    for (i = 0; i < count && i < K210W_MAX_TENSORS; i++) {
        uint8_t *data;
        size_t size;
        k210w_output_t *out = &outputs[i];
        if (kpu_get_output(&kpu_ctx, i, &data, &size) != 0) {
            copy_text(err, err_cap, "kpu_get_output failed");
            return K210W_E_INFER_FAILED;
        }
        out->data = data;
        out->nbytes = (uint32_t)size;
        if (i < kpu_io.n_outputs && k210w_tensor_nbytes(&kpu_io.outputs[i]) == (long long)size) {
            out->desc = kpu_io.outputs[i];
        } else { /* raw bytes, shape [size] */
            memset(&out->desc, 0, sizeof out->desc);
            out->desc.dtype = K210W_DT_UINT8;
            out->desc.ndim = 1;
            out->desc.dims[0] = (uint32_t)size;
        }
    }
    *n_outputs = (uint8_t)i;
    return 0;
}

static const k210w_backend_t kpu_backend = {
    "c-sdk-kpu", kmodel_versions, sizeof kmodel_versions, NULL, kpu_model_buffer, kpu_load, kpu_unload, kpu_infer,
};

/* ---- runner ---- */

static uint8_t rx_enc[K210W_RX_ENC_CAP(K210_MAX_FRAME)], rx_dec[K210_MAX_FRAME];
static uint8_t tx_raw[K210_MAX_FRAME], tx_enc[K210W_TX_ENC_CAP(K210_MAX_FRAME)];
static uint8_t input_buf[K210_MAX_INPUT] __attribute__((aligned(64)));
#if K210_INFLATE
static uint8_t packed_buf[K210_MAX_INPUT]; /* a ZLIB stream, inflated into input_buf */
#define PACKED_BUF packed_buf
#else
#define PACKED_BUF NULL
#endif
static k210w_runner_t runner;

/* No TRNG on the K210, and the cycle count at main() can repeat from one boot to the next. So the
 * nonce also folds in the AI SRAM (0x80600000): nothing initialises it before the first model runs,
 * it powers up random and keeps whatever the last model left across a soft reset. The unsolicited
 * boot HELLO stays the primary reset signal. */
#ifndef K210_AI_SRAM
#define K210_AI_SRAM 0x80600000u
#endif
static uint32_t boot_nonce(void)
{
    const volatile uint32_t *ai = (const volatile uint32_t *)(uintptr_t)K210_AI_SRAM;
    uint64_t c = read_cycle();
    uint32_t n = (uint32_t)c ^ (uint32_t)(c >> 32), i;
    for (i = 0; i < 1024u; i++)
        n = (n ^ ai[i * 16u]) * 2654435761u;
    return n ? n : 1u;
}

/* Nothing received: sleep until the next interrupt. MIE is off around the test so a byte that lands
 * just before the wfi still wakes it (wfi returns on a pending interrupt whatever MIE says). */
static void idle(void)
{
    __asm__ volatile("csrc mstatus, %0" ::"r"(8u));
    if (rx_tail == rx_head)
        __asm__ volatile("wfi");
    __asm__ volatile("csrs mstatus, %0" ::"r"(8u));
}

/* The board's SPI flash sits on SPI3, chip select 0; the w25qxx driver comes from
 * kendryte-standalone-demo's face_detect/ folder (CMake: K210_W25QXX_DIR; its flash_w25qxx/ driver has
 * other signatures and no direct write or erase, and CMake refuses it). */
#if K210_FLASH_MODEL_SIZE > 0 || K210_CACHE_FLASH_SIZE > 0
static void flash_init(void)
{
    w25qxx_init(3, 0);
    w25qxx_enable_quad_mode();
}
#else
static void flash_init(void)
{
}
#endif

#if K210_CACHE_FLASH_SIZE > 0
#if K210_CACHE_FLASH_ADDR % K210_FLASH_SECTOR || K210_CACHE_FLASH_SIZE % K210_FLASH_SECTOR
#error "the sample cache region must start and end on 4 KiB sector boundaries"
#endif
#if K210_CACHE_FLASH_ADDR < K210_FIRMWARE_END || K210_CACHE_FLASH_ADDR + K210_CACHE_FLASH_SIZE > K210_FLASH_CHIP_SIZE
#error "the sample cache region must lie between the firmware's end and the end of the 16 MiB flash"
#endif
#if K210_FLASH_MODEL_SIZE > 0 && K210_CACHE_FLASH_ADDR < K210_FLASH_MODEL_ADDR + K210_FLASH_MODEL_SIZE && \
    K210_FLASH_MODEL_ADDR < K210_CACHE_FLASH_ADDR + K210_CACHE_FLASH_SIZE
#error "the sample cache region overlaps the flashed model"
#endif
static k210s_slot_t cache_slots[K210_CACHE_SLOTS];
static k210s_store_t cache_store;

static int cache_read(void *ctx, uint32_t addr, uint8_t *buf, uint32_t n)
{
    (void)ctx;
    return w25qxx_read_data(K210_CACHE_FLASH_ADDR + addr, buf, n, W25QXX_QUAD_FAST) == W25QXX_OK ? 0 : -1;
}

/* face_detect/w25qxx.c returns W25QXX_OK whatever the chip did: what was programmed or erased is read
 * back and compared, 64 bytes at a time, so a failing chip is an error and not a silently bad cache. */
static int cache_verify(uint32_t addr, const uint8_t *want, uint32_t n)
{
    uint8_t got[64];
    while (n) {
        uint32_t k = n < sizeof got ? n : (uint32_t)sizeof got;
        if (w25qxx_read_data(K210_CACHE_FLASH_ADDR + addr, got, k, W25QXX_QUAD_FAST) != W25QXX_OK)
            return -1;
        for (uint32_t i = 0; i < k; i++)
            if (got[i] != (want ? want[i] : 0xFFu))
                return -1;
        addr += k;
        n -= k;
        if (want)
            want += k;
    }
    return 0;
}

static int cache_program(void *ctx, uint32_t addr, const uint8_t *data, uint32_t n)
{
    (void)ctx;
    /* write_data_direct only page-programs (the store erased these bytes); it does not write to data. */
    if (w25qxx_write_data_direct(K210_CACHE_FLASH_ADDR + addr, (uint8_t *)(uintptr_t)data, n) != W25QXX_OK)
        return -1;
    return cache_verify(addr, data, n);
}

static int cache_erase(void *ctx, uint32_t addr)
{
    (void)ctx;
    if (w25qxx_sector_erase(K210_CACHE_FLASH_ADDR + addr) != W25QXX_OK)
        return -1;
    while (w25qxx_is_busy() == W25QXX_BUSY) /* the driver only starts the erase */
        ;
    return cache_verify(addr, NULL, K210_FLASH_SECTOR);
}

static const k210s_flash_t cache_flash = {
    NULL, K210_CACHE_FLASH_SIZE, K210_FLASH_SECTOR, cache_read, cache_program, cache_erase,
};

/* Scans the region (input_buf is the scan's scratch: nothing else uses it at boot). */
static k210s_store_t *open_cache(void)
{
    if (k210s_open(&cache_store, &cache_flash, cache_slots, K210_CACHE_SLOTS, input_buf, sizeof input_buf) != 0)
        return NULL;
    return &cache_store;
}
#else
static k210s_store_t *open_cache(void)
{
    return NULL;
}
#endif

#if K210_FLASH_MODEL_SIZE > 0
#if K210_FLASH_MODEL_SIZE > K210_MODEL_BUF_SIZE
#error "K210_FLASH_MODEL_SIZE is bigger than K210_MODEL_BUF_SIZE"
#endif
static void load_flash_model(void)
{
    k210w_io_t io;
    memset(&io, 0, sizeof io);
    w25qxx_read_data(K210_FLASH_MODEL_ADDR, model_buf, K210_FLASH_MODEL_SIZE, W25QXX_QUAD_FAST);
    if (k210w_runner_load_boot_model(&runner, model_buf, K210_FLASH_MODEL_SIZE, "flash", &io) != 0)
        k210w_runner_boot_note(&runner, 3, runner.text);
}
#else
static void load_flash_model(void)
{
}
#endif

int main(void)
{
    k210w_runner_config_t cfg;
    uint8_t chunk[256];

    fpioa_set_function(K210_UART_RX_PIN, FUNC_UART1_RX);
    fpioa_set_function(K210_UART_TX_PIN, FUNC_UART1_TX);
    plic_init();
    sysctl_enable_irq();
    uart_init(UART_CHANNEL);
    uart_configure(UART_CHANNEL, K210_BAUD, UART_BITWIDTH_8BIT, UART_STOP_1, UART_PARITY_NONE);
    uart_set_receive_trigger(UART_CHANNEL, UART_RECEIVE_FIFO_8);
    uart_irq_register(UART_CHANNEL, UART_RECEIVE, on_uart_rx, NULL, 1);

    memset(&cfg, 0, sizeof cfg);
    cfg.backend = &kpu_backend;
    cfg.write = uart_write;
    cfg.reboot = reboot;
    cfg.max_frame = K210_MAX_FRAME;
    cfg.rx_window = K210_RX_RING;
    cfg.max_model = sizeof model_buf;
    cfg.max_input = sizeof input_buf;
    cfg.firmware = "k210-deploy-c";
    cfg.fw_version = "1.0";
    cfg.rx_enc = rx_enc;
    cfg.rx_dec = rx_dec;
    cfg.tx_raw = tx_raw;
    cfg.tx_enc = tx_enc;
    cfg.input = input_buf;
    cfg.packed = PACKED_BUF;
    cfg.nonce = boot_nonce();
    flash_init();
    cfg.cache = open_cache();
    if (k210w_runner_init(&runner, &cfg) != 0)
        return 1;
    k210w_runner_announce(&runner);
    if (K210_CACHE_FLASH_SIZE > 0 && !cfg.cache)
        k210w_runner_boot_note(&runner, 2, "sample cache: the flash region cannot be read; no CACHE cap");
    load_flash_model();

    for (;;) {
        uint32_t n = 0;
        while (rx_tail != rx_head && n < sizeof chunk)
            chunk[n++] = rx_ring[rx_tail++ & (K210_RX_RING - 1u)];
        if (n)
            k210w_runner_feed(&runner, chunk, n);
        else
            idle();
    }
}

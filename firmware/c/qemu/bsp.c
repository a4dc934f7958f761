/* The Kendryte SDK API that k210/main.c calls (k210/sdk_api.h), implemented for QEMU's `virt` machine,
 * so the same board glue runs as real RISC-V code here. Only this layer differs from the K210 build:
 *   UART1            -> the NS16550A at 0x10000000, receive interrupts through the PLIC (source 10)
 *   sysctl_reset     -> the SiFive test finisher at 0x100000 (0x7777: reset; QEMU reloads the image)
 *   KPU              -> a kmodel v5: nncase's simulator on the host (kpu_bridge below: RISC-V
 *                       semihosting over two FIFOs that qemu_board.py serves), standing in for the
 *                       SDK's kpu_load_kmodel / kpu_run_kmodel / kpu_get_output (lib/drivers/kpu.c ->
 *                       lib/nncase/v1/nncase_v1.cpp: the nncase runtime's interpreter, outputs as its
 *                       output tensors' bytes); the arithmetic fake kmodel ("ARTH", firmware/README.md),
 *                       the same arithmetic as the host build's backend: outputs uint8 [n], float32 [1]
 *   msleep, clocks   -> the CLINT's mtime (10 MHz on virt); fpioa, plic_init: nothing to do
 *   w25qxx (SPI flash) -> RAM holding the sample cache's region (K210_CACHE_FLASH_ADDR/SIZE), with NOR
 *                       semantics (erase to 0xFF by 4 KiB sector, program clears bits); other addresses
 *                       read erased. Its content is lost when QEMU exits or the guest resets. */
#include <stdint.h>
#include <string.h>

#include "../k210/sdk_api.h"

#define UART_BASE 0x10000000u
#define UART_RBR 0u
#define UART_THR 0u
#define UART_IER 1u
#define UART_FCR 2u
#define UART_LCR 3u
#define UART_LSR 5u
#define LSR_DR 0x01u
#define LSR_THRE 0x20u
#define PLIC_BASE 0x0c000000u
#define PLIC_UART_IRQ 10u
#define PLIC_ENABLE_HART0_M (PLIC_BASE + 0x2000u)
#define PLIC_THRESHOLD_HART0_M (PLIC_BASE + 0x200000u)
#define PLIC_CLAIM_HART0_M (PLIC_BASE + 0x200004u)
#define CLINT_MTIME 0x0200bff8u
#define MTIME_HZ 10000000u
#define TEST_FINISHER 0x00100000u
#define FINISHER_RESET 0x7777u
#define K210_ALIAS_OFFSET 0x40000000u /* the K210's uncached alias; virt has none: map it back */

#define REG8(a) (*(volatile uint8_t *)(uintptr_t)(a))
#define REG32(a) (*(volatile uint32_t *)(uintptr_t)(a))
#define REG64(a) (*(volatile uint64_t *)(uintptr_t)(a))

static plic_irq_callback_t rx_callback;
static void *rx_ctx;

int fpioa_set_function(int number, fpioa_function_t function)
{
    (void)number;
    (void)function;
    return 0;
}

void uart_init(uart_device_number_t channel)
{
    (void)channel;
    REG8(UART_BASE + UART_IER) = 0;
    REG8(UART_BASE + UART_FCR) = 0x07; /* FIFOs on and cleared */
    /* Bytes the host sent while we booted filled the receiver, and QEMU takes no more from its socket
     * until the guest reads RBR (clearing the FIFO does not count): without this read a host that spoke
     * first was never heard (k210 hil timed out on 2 boots in 3). */
    (void)REG8(UART_BASE + UART_RBR);
}

void uart_configure(uart_device_number_t channel, uint32_t baud_rate, uart_bitwidth_t data_width,
                    uart_stopbit_t stopbit, uart_parity_t parity)
{
    (void)channel;
    (void)baud_rate; /* an emulated UART has no line rate */
    (void)stopbit;
    (void)parity;
    REG8(UART_BASE + UART_LCR) = (uint8_t)(data_width - 5); /* 8N1 */
}

int uart_send_data(uart_device_number_t channel, const char *buffer, size_t buf_len)
{
    size_t i;
    (void)channel;
    for (i = 0; i < buf_len; i++) {
        while (!(REG8(UART_BASE + UART_LSR) & LSR_THRE))
            ;
        REG8(UART_BASE + UART_THR) = (uint8_t)buffer[i];
    }
    return (int)buf_len;
}

int uart_receive_data(uart_device_number_t channel, char *buffer, size_t buf_len)
{
    size_t n = 0;
    (void)channel;
    while (n < buf_len && (REG8(UART_BASE + UART_LSR) & LSR_DR))
        buffer[n++] = (char)REG8(UART_BASE + UART_RBR);
    return (int)n;
}

/* The same trigger levels as the K210's UART (1/4/8/14 bytes). It matters here too: QEMU's 16550
 * takes bytes from the host only up to the trigger level before it interrupts. */
void uart_set_receive_trigger(uart_device_number_t channel, uart_receive_trigger_t trigger)
{
    (void)channel;
    REG8(UART_BASE + UART_FCR) = (uint8_t)(0x01u | (uint32_t)trigger << 6);
}

void uart_irq_register(uart_device_number_t channel, uart_interrupt_mode_t interrupt_mode,
                       plic_irq_callback_t uart_callback, void *ctx, uint32_t priority)
{
    (void)channel;
    (void)interrupt_mode;
    rx_callback = uart_callback;
    rx_ctx = ctx;
    REG32(PLIC_BASE + 4u * PLIC_UART_IRQ) = priority ? priority : 1u;
    REG32(PLIC_ENABLE_HART0_M) |= 1u << PLIC_UART_IRQ;
    REG8(UART_BASE + UART_IER) = 0x01; /* received data available */
}

void plic_init(void)
{
    REG32(PLIC_ENABLE_HART0_M) = 0;
    REG32(PLIC_THRESHOLD_HART0_M) = 0;
}

void sysctl_enable_irq(void)
{
    __asm__ volatile("csrs mie, %0" ::"r"(1u << 11));  /* MEIE */
    __asm__ volatile("csrs mstatus, %0" ::"r"(1u << 3)); /* MIE */
}

/* mcycle runs at the host's pace under TCG; report the frequency that turns its counts into the
 * emulator's own microseconds closely enough for a timing field nobody compares. */
uint32_t sysctl_clock_get_freq(sysctl_clock_t clock)
{
    (void)clock;
    return 1000000000u;
}

void sysctl_reset(sysctl_reset_t reset)
{
    (void)reset;
    REG32(TEST_FINISHER) = FINISHER_RESET;
    for (;;)
        ;
}

int msleep(uint64_t msec)
{
    uint64_t end = REG64(CLINT_MTIME) + msec * (MTIME_HZ / 1000u);
    while (REG64(CLINT_MTIME) < end)
        ;
    return 0;
}

void __attribute__((interrupt("machine"), aligned(4))) qemu_trap(void);
void __attribute__((interrupt("machine"), aligned(4))) qemu_trap(void)
{
    uint64_t cause;
    __asm__ volatile("csrr %0, mcause" : "=r"(cause));
    if ((cause >> 63) && (cause & 0xff) == 11u) {
        uint32_t irq = REG32(PLIC_CLAIM_HART0_M);
        if (irq == PLIC_UART_IRQ && rx_callback)
            rx_callback(rx_ctx);
        REG32(PLIC_CLAIM_HART0_M) = irq;
        return;
    }
    REG32(TEST_FINISHER) = 0x3333u | (0xEu << 16); /* an exception: stop QEMU with a failure code */
    for (;;)
        ;
}

/* ---- kpu_bridge: nncase's simulator on the host, through RISC-V semihosting ----
 * QEMU runs with -semihosting-config enable=on,target=native in the folder where qemu_board.py made two
 * FIFOs and serves them from a thread running nncase's simulator. Requests (little-endian u32s):
 *   LOAD  'L', size, the kmodel's bytes     -> i32 status, u32 input bytes (as the runtime reads them)
 *   RUN   'R', size, the input's bytes      -> i32 status, u32 outputs, then per output u32 size, bytes
 * The SDK's kpu_load_kmodel gets no size (nncase_v1.cpp loads a span of SIZE_MAX and reads the headers):
 * the size sent is the one the v5 headers give, model header + every module's size. */

#define SEMI_OPEN 0x01
#define SEMI_WRITE 0x05
#define SEMI_READ 0x06
#define SEMI_MODE_RB 1
#define SEMI_MODE_WB 5
#define BRIDGE_REQUEST "k210_kpu_request"
#define BRIDGE_REPLY "k210_kpu_reply"
#define BRIDGE_MAX_OUTPUTS 8u
#ifndef K210_MODEL_BUF_SIZE
#define K210_MODEL_BUF_SIZE (3u * 1024u * 1024u) /* the glue's model buffer (k210/main.c) */
#endif
#ifndef K210_MAX_INPUT
#define K210_MAX_INPUT (512u * 1024u) /* the glue's input buffer (k210/main.c) */
#endif

/* The outputs of either KPU: the arithmetic model's output 0, or every output the simulator sent. */
static uint8_t out0[512u * 1024u];
static uint32_t sim_offset[BRIDGE_MAX_OUTPUTS], sim_size[BRIDGE_MAX_OUTPUTS], sim_outputs;
static long bridge_request = -1, bridge_reply = -1;

/* The RISC-V semihosting call: slli/ebreak/srai, uncompressed, within one 16-byte-aligned block so
 * that QEMU sees the three instructions on one page. */
static long semihost(long op, uintptr_t *args)
{
    register long a0 __asm__("a0") = op;
    register uintptr_t *a1 __asm__("a1") = args;
    __asm__ volatile(".option push\n.option norvc\n.balign 16\n"
                     "slli x0, x0, 0x1f\nebreak\nsrai x0, x0, 7\n.option pop\n"
                     : "+r"(a0)
                     : "r"(a1)
                     : "memory");
    return a0;
}

static long semi_open(const char *path, long mode)
{
    uintptr_t args[3] = {(uintptr_t)path, (uintptr_t)mode, strlen(path)};
    return semihost(SEMI_OPEN, args);
}

static int semi_write(long fd, const void *data, uint32_t len)
{
    uintptr_t args[3] = {(uintptr_t)fd, (uintptr_t)data, len};
    return len == 0 || semihost(SEMI_WRITE, args) == 0 ? 0 : -1;
}

/* SYS_READ returns how many bytes it did not read; a FIFO hands over what it has. */
static int semi_read(long fd, void *data, uint32_t len)
{
    uint8_t *p = data;
    while (len) {
        uintptr_t args[3] = {(uintptr_t)fd, (uintptr_t)p, len};
        long left = semihost(SEMI_READ, args);
        if (left < 0 || (uint32_t)left >= len)
            return -1; /* an error, or the host end closed */
        p += len - (uint32_t)left;
        len = (uint32_t)left;
    }
    return 0;
}

static int bridge_open(void)
{
    if (bridge_reply >= 0)
        return 0;
    if (bridge_request < 0)
        bridge_request = semi_open(BRIDGE_REQUEST, SEMI_MODE_WB);
    if (bridge_request >= 0)
        bridge_reply = semi_open(BRIDGE_REPLY, SEMI_MODE_RB);
    return bridge_reply >= 0 ? 0 : -1;
}

static int bridge_send(uint32_t op, const uint8_t *data, uint32_t len)
{
    uint8_t head[8];
    uint32_t i;
    for (i = 0; i < 4; i++) {
        head[i] = (uint8_t)(op >> 8 * i);
        head[4 + i] = (uint8_t)(len >> 8 * i);
    }
    return bridge_open() != 0 || semi_write(bridge_request, head, sizeof head) != 0 ||
                   semi_write(bridge_request, data, len) != 0
               ? -1
               : 0;
}

static uint32_t le32(const uint8_t *p);

/* Bytes of a kmodel v5 as its headers give them (what the runtime reads); 0 if they do not add up. */
static uint32_t kmodel_v5_size(const uint8_t *model)
{
    uint32_t size, modules, i;
    if (memcmp(model, "LDMK", 4) != 0 || le32(model + 4) != 5) /* MODEL_IDENTIFIER 'KMDL' as a LE u32 */
        return 0;
    size = le32(model + 8); /* model_header.header_size */
    modules = le32(model + 20);
    for (i = 0; i < modules && size <= K210_MODEL_BUF_SIZE - 48u; i++) {
        uint32_t module_size = le32(model + size + 24); /* module_header.size, its header included */
        if (module_size < 48u || module_size > K210_MODEL_BUF_SIZE - size)
            return 0;
        size += module_size;
    }
    return i == modules ? size : 0;
}

static int bridge_load(const uint8_t *model, uint32_t *input_len)
{
    uint8_t reply[8];
    uint32_t size = kmodel_v5_size(model);
    sim_outputs = 0;
    if (size == 0 || bridge_send('L', model, size) != 0 || semi_read(bridge_reply, reply, sizeof reply) != 0 ||
        le32(reply) != 0 || le32(reply + 4) > K210_MAX_INPUT)
        return -1;
    *input_len = le32(reply + 4);
    return 0;
}

static int bridge_run(const uint8_t *input, uint32_t len)
{
    uint8_t head[8];
    uint32_t i, used = 0;
    sim_outputs = 0;
    if (bridge_send('R', input, len) != 0 || semi_read(bridge_reply, head, sizeof head) != 0 || le32(head) != 0 ||
        le32(head + 4) > BRIDGE_MAX_OUTPUTS)
        return -1;
    for (i = 0; i < le32(head + 4); i++) {
        uint8_t size[4];
        if (semi_read(bridge_reply, size, sizeof size) != 0 || le32(size) > sizeof out0 - used ||
            semi_read(bridge_reply, out0 + used, le32(size)) != 0)
            return -1;
        sim_offset[i] = used;
        sim_size[i] = le32(size);
        used += (le32(size) + 7u) & ~7u; /* each output 8-byte aligned, as the runtime's tensors */
        if (used > sizeof out0)
            used = sizeof out0;
    }
    sim_outputs = i;
    return 0;
}

/* ---- the KPU: the arithmetic fake kmodel, or nncase's simulator on the host ---- */

typedef struct {
    const uint8_t *model;
    uint32_t input_len;
    uint8_t mul, add;
    uint8_t bridged; /* a kmodel v5 run by the host's simulator (kpu_bridge) */
} arith_model_t;

static uint8_t sum_le[4];

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int kpu_load_kmodel(kpu_model_context_t *ctx, const uint8_t *buffer)
{
    arith_model_t *m = (arith_model_t *)ctx->reserved;
    _Static_assert(sizeof(arith_model_t) <= sizeof ctx->reserved, "context too small");
    memset(m, 0, sizeof *m);
    if (memcmp(buffer + 8, "ARTH", 4) != 0) {
        if (bridge_load(buffer, &m->input_len) != 0)
            return -1;
        m->model = buffer;
        m->bridged = 1;
        return 0;
    }
    if (le32(buffer + 16) == 0 || le32(buffer + 16) > sizeof out0)
        return -1;
    m->model = buffer;
    m->mul = buffer[12];
    m->add = buffer[13];
    m->input_len = le32(buffer + 16);
    return 0;
}

void kpu_model_free(kpu_model_context_t *ctx)
{
    memset(ctx, 0, sizeof *ctx);
}

int kpu_run_kmodel(kpu_model_context_t *ctx, const uint8_t *src, dmac_channel_number_t dma_ch,
                   kpu_done_callback_t done_callback, void *userdata)
{
    const arith_model_t *m = (const arith_model_t *)ctx->reserved;
    const uint8_t *x = src + K210_ALIAS_OFFSET;
    uint32_t i, sum = 0, bits;
    float total;
    (void)dma_ch;
    if (!m->model)
        return -1;
    if (m->bridged) {
        if (bridge_run(x, m->input_len) != 0)
            return -1;
        done_callback(userdata);
        return 0;
    }
    for (i = 0; i < m->input_len; i++) {
        out0[i] = (uint8_t)(x[i] * m->mul + m->add);
        sum += x[i];
    }
    total = (float)sum;
    memcpy(&bits, &total, sizeof bits);
    sum_le[0] = (uint8_t)bits;
    sum_le[1] = (uint8_t)(bits >> 8);
    sum_le[2] = (uint8_t)(bits >> 16);
    sum_le[3] = (uint8_t)(bits >> 24);
    done_callback(userdata);
    return 0;
}

int kpu_get_output(kpu_model_context_t *ctx, uint32_t index, uint8_t **data, size_t *size)
{
    const arith_model_t *m = (const arith_model_t *)ctx->reserved;
    if (m->bridged) {
        if (index >= sim_outputs)
            return -1;
        *data = out0 + sim_offset[index];
        *size = sim_size[index];
        return 0;
    }
    if (index == 0) {
        *data = out0;
        *size = m->input_len;
        return 0;
    }
    if (index == 1) {
        *data = sum_le;
        *size = sizeof sum_le;
        return 0;
    }
    return -1;
}

/* ---- SPI flash: the sample cache's region in RAM ---- */

#if defined(K210_CACHE_FLASH_SIZE) && K210_CACHE_FLASH_SIZE > 0
#define FLASH_SECTOR 4096u

static uint8_t flash_window[K210_CACHE_FLASH_SIZE];

static int in_window(uint32_t addr, uint32_t length)
{
    return addr >= K210_CACHE_FLASH_ADDR && length <= K210_CACHE_FLASH_SIZE &&
           addr - K210_CACHE_FLASH_ADDR <= K210_CACHE_FLASH_SIZE - length;
}

w25qxx_status_t w25qxx_init(uint8_t spi_index, uint8_t spi_ss)
{
    (void)spi_index;
    (void)spi_ss;
    memset(flash_window, 0xFF, sizeof flash_window); /* a new flash: erased */
    return W25QXX_OK;
}

w25qxx_status_t w25qxx_enable_quad_mode(void)
{
    return W25QXX_OK;
}

w25qxx_status_t w25qxx_is_busy(void)
{
    return W25QXX_OK;
}

w25qxx_status_t w25qxx_read_data(uint32_t addr, uint8_t *data_buf, uint32_t length, w25qxx_read_t mode)
{
    (void)mode;
    if (in_window(addr, length))
        memcpy(data_buf, flash_window + (addr - K210_CACHE_FLASH_ADDR), length);
    else
        memset(data_buf, 0xFF, length);
    return W25QXX_OK;
}

w25qxx_status_t w25qxx_write_data_direct(uint32_t addr, uint8_t *data_buf, uint32_t length)
{
    uint32_t i;
    if (!in_window(addr, length))
        return W25QXX_ERROR;
    for (i = 0; i < length; i++)
        flash_window[addr - K210_CACHE_FLASH_ADDR + i] &= data_buf[i];
    return W25QXX_OK;
}

w25qxx_status_t w25qxx_sector_erase(uint32_t addr)
{
    addr &= ~(FLASH_SECTOR - 1u);
    if (!in_window(addr, FLASH_SECTOR))
        return W25QXX_ERROR;
    memset(flash_window + (addr - K210_CACHE_FLASH_ADDR), 0xFF, FLASH_SECTOR);
    return W25QXX_OK;
}
#endif

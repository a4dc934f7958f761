/* The Kendryte standalone SDK (branch develop) API the board glue uses, and nothing else.
 *
 * Written from the SDK's documented headers (lib/drivers/include/{fpioa,uart,sysctl,kpu,dmac,plic}.h,
 * lib/bsp/include/{encoding,sleep}.h) and the w25qxx SPI-flash driver of kendryte-standalone-demo,
 * so that the glue compiles without an SDK checkout (the test suite cross-compiles it with
 * Debian's riscv64-unknown-elf-gcc). A real firmware build (CMake with K210_SDK set) defines
 * K210_USE_SDK_HEADERS and gets the SDK's own headers instead, so the ABI is always the SDK's. */
#ifndef K210_SDK_API_H
#define K210_SDK_API_H

#ifdef K210_USE_SDK_HEADERS

#include <dmac.h>
#include <encoding.h>
#include <fpioa.h>
#include <kpu.h>
#include <plic.h>
#include <sleep.h>
#include <sysctl.h>
#include <uart.h>
/* w25qxx.h is not part of the standalone SDK (it comes with kendryte-standalone-demo): only a build
 * with a flashed boot model or a sample cache in flash needs it, and CMake then requires K210_W25QXX_DIR. */
#if (defined(K210_FLASH_MODEL_SIZE) && K210_FLASH_MODEL_SIZE > 0) || \
    (defined(K210_CACHE_FLASH_SIZE) && K210_CACHE_FLASH_SIZE > 0)
#include <w25qxx.h>
#endif

#else

#include <stddef.h>
#include <stdint.h>

/* fpioa.h: route a pin to a peripheral function. Only the functions the glue uses are named. */
typedef enum {
    FUNC_UART1_RX = 64,
    FUNC_UART1_TX = 65,
    FUNC_MAX = 256
} fpioa_function_t;
int fpioa_set_function(int number, fpioa_function_t function);

/* uart.h */
typedef enum { UART_DEVICE_1, UART_DEVICE_2, UART_DEVICE_3, UART_DEVICE_MAX } uart_device_number_t;
typedef enum { UART_BITWIDTH_5BIT = 5, UART_BITWIDTH_6BIT, UART_BITWIDTH_7BIT, UART_BITWIDTH_8BIT } uart_bitwidth_t;
typedef enum { UART_STOP_1, UART_STOP_1_5, UART_STOP_2 } uart_stopbit_t;
typedef enum { UART_PARITY_NONE, UART_PARITY_ODD, UART_PARITY_EVEN } uart_parity_t;
typedef enum { UART_SEND = 1, UART_RECEIVE = 2 } uart_interrupt_mode_t;
typedef enum {
    UART_RECEIVE_FIFO_1,
    UART_RECEIVE_FIFO_4,
    UART_RECEIVE_FIFO_8,
    UART_RECEIVE_FIFO_14
} uart_receive_trigger_t;
typedef int (*plic_irq_callback_t)(void *ctx);
void uart_init(uart_device_number_t channel);
void uart_configure(uart_device_number_t channel, uint32_t baud_rate, uart_bitwidth_t data_width,
                    uart_stopbit_t stopbit, uart_parity_t parity);
int uart_send_data(uart_device_number_t channel, const char *buffer, size_t buf_len);
/* Non-blocking: returns how many bytes the RX FIFO held (up to buf_len). */
int uart_receive_data(uart_device_number_t channel, char *buffer, size_t buf_len);
void uart_set_receive_trigger(uart_device_number_t channel, uart_receive_trigger_t trigger);
void uart_irq_register(uart_device_number_t channel, uart_interrupt_mode_t interrupt_mode,
                       plic_irq_callback_t uart_callback, void *ctx, uint32_t priority);

/* plic.h / sysctl.h */
void plic_init(void);
void sysctl_enable_irq(void);
typedef enum { SYSCTL_CLOCK_PLL0, SYSCTL_CLOCK_PLL1, SYSCTL_CLOCK_PLL2, SYSCTL_CLOCK_CPU } sysctl_clock_t;
uint32_t sysctl_clock_get_freq(sysctl_clock_t clock);
typedef enum { SYSCTL_RESET_SOC, SYSCTL_RESET_ROM } sysctl_reset_t;
void sysctl_reset(sysctl_reset_t reset);

/* encoding.h: the SDK's read_cycle() reads the mcycle CSR (a macro there, a function here). */
static inline uint64_t read_cycle(void)
{
    uint64_t cycles;
    __asm__ volatile("csrr %0, mcycle" : "=r"(cycles));
    return cycles;
}

/* sleep.h */
int msleep(uint64_t msec);

/* dmac.h / kpu.h */
typedef enum { DMAC_CHANNEL0, DMAC_CHANNEL1, DMAC_CHANNEL2, DMAC_CHANNEL3, DMAC_CHANNEL4, DMAC_CHANNEL5 }
    dmac_channel_number_t;
typedef void (*kpu_done_callback_t)(void *userdata);
/* Only ever used through a pointer by the glue; the SDK's struct is an int and a union of pointer-sized
 * fields. This stand-in reserves at least as much storage; real builds use the SDK's definition. */
typedef struct {
    int is_nncase;
    void *reserved[16];
} kpu_model_context_t;
int kpu_load_kmodel(kpu_model_context_t *ctx, const uint8_t *buffer);
void kpu_model_free(kpu_model_context_t *ctx);
int kpu_run_kmodel(kpu_model_context_t *ctx, const uint8_t *src, dmac_channel_number_t dma_ch,
                   kpu_done_callback_t done_callback, void *userdata);
int kpu_get_output(kpu_model_context_t *ctx, uint32_t index, uint8_t **data, size_t *size);

/* w25qxx.h (kendryte-standalone-demo's SPI flash driver; not part of the SDK library) */
typedef enum { W25QXX_OK = 0, W25QXX_BUSY, W25QXX_ERROR } w25qxx_status_t;
typedef enum {
    W25QXX_STANDARD = 0,
    W25QXX_STANDARD_FAST,
    W25QXX_DUAL,
    W25QXX_DUAL_FAST,
    W25QXX_QUAD,
    W25QXX_QUAD_FAST
} w25qxx_read_t;
w25qxx_status_t w25qxx_init(uint8_t spi_index, uint8_t spi_ss);
w25qxx_status_t w25qxx_enable_quad_mode(void);
w25qxx_status_t w25qxx_read_data(uint32_t addr, uint8_t *data_buf, uint32_t length, w25qxx_read_t mode);
/* Page program only (no erase, 1 -> 0 bits), split at 256-byte pages; waits until each page is written.
 * (w25qxx_write_data would read-modify-erase-write whole 4 KiB sectors through a 4 KiB stack buffer.) */
w25qxx_status_t w25qxx_write_data_direct(uint32_t addr, uint8_t *data_buf, uint32_t length);
/* Starts erasing the 4 KiB sector at addr and returns: poll w25qxx_is_busy() until it is done. */
w25qxx_status_t w25qxx_sector_erase(uint32_t addr);
w25qxx_status_t w25qxx_is_busy(void);

#endif /* K210_USE_SDK_HEADERS */
#endif

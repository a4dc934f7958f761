/* k210_runner_host: the C runner core on a PC, over a pseudo-terminal, a tty or stdin/stdout, with
 * the arithmetic backend. It is the real C protocol loop, so a host harness can be tested here.
 *
 *   k210_runner_host --pty            create a pty pair, print "PTY <path>" on stdout, serve it
 *   k210_runner_host --tty PATH       serve an existing tty / pty slave (set to raw)
 *   k210_runner_host --stdio          frames on stdin/stdout (diagnostics go to stderr)
 * options: --max-frame N --max-input N --max-model N --rx-window N --model FILE (boot model)
 *          --cache-file PATH [--cache-bytes N] [--cache-cut-after N]   the sample cache (INFER modes KEEP,
 *                 CACHED) in a file that behaves as NOR flash (host/file_flash.h); without it no CACHE cap.
 *                 --cache-cut-after N: a power cut (exit status 3) once N bytes were programmed
 *          --no-inflate  no INFER mode ZLIB (HELLO announces no INFLATE cap)
 *          --exit-with-parent  (with --pty/--tty) exit when stdin closes, as `k210 hil` lets a board go */
#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "../core/runner.h"
#include "arith_backend.h"
#include "file_flash.h"

#define FIRMWARE_NAME "k210-deploy-c"
#define FIRMWARE_VERSION "1.0-host"
#define CACHE_BYTES_PER_SLOT 256u /* slot table: one 12-byte slot per 256 bytes of region */

typedef struct {
    int in_fd, out_fd;
    const char *model_path;
    uint32_t max_frame, max_input, max_model, rx_window;
    const char *cache_file;
    uint32_t cache_bytes;
    uint64_t cache_cut_after;
    int no_inflate, exit_with_parent;
} options_t;

static volatile int reboot_requested;

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint32_t random_nonce(void)
{
    uint32_t nonce = 0;
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd < 0 || read(fd, &nonce, sizeof nonce) != (ssize_t)sizeof nonce)
        nonce = (uint32_t)now_us() ^ (uint32_t)getpid() << 16;
    if (fd >= 0)
        close(fd);
    return nonce ? nonce : 1u;
}

static void write_all(void *ctx, const uint8_t *data, size_t len)
{
    int fd = *(int *)ctx;
    while (len) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            perror("k210_runner_host: write");
            exit(1);
        }
        data += n;
        len -= (size_t)n;
    }
}

static void request_reboot(void *ctx)
{
    (void)ctx;
    reboot_requested = 1; /* acted on after the current frame: the ACK is already out */
}

static int set_raw(int fd)
{
    struct termios t;
    if (tcgetattr(fd, &t) != 0)
        return -1;
    cfmakeraw(&t);
    return tcsetattr(fd, TCSANOW, &t);
}

static int open_pty(void)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY), slave;
    const char *name;
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0 || !(name = ptsname(master)))
        return -1;
    /* Keep the slave open and raw, so the host can open and close it at will and the line
     * discipline never echoes or translates bytes written before it did. */
    slave = open(name, O_RDWR | O_NOCTTY);
    if (slave < 0 || set_raw(slave) != 0)
        return -1;
    printf("PTY %s\n", name);
    fflush(stdout);
    return master;
}

static long read_file(const char *path, uint8_t *buf, uint32_t cap)
{
    FILE *f = fopen(path, "rb");
    size_t n;
    if (!f)
        return -1;
    n = fread(buf, 1, cap, f);
    if (!feof(f)) {
        fclose(f);
        return -2;
    }
    fclose(f);
    return (long)n;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "k210_runner_host: out of memory\n");
        exit(1);
    }
    return p;
}

static void usage(void)
{
    fprintf(stderr, "usage: k210_runner_host (--pty | --tty PATH | --stdio) [--max-frame N] [--max-input N]\n"
                    "                        [--max-model N] [--rx-window N] [--model FILE] [--no-inflate]\n"
                    "                        [--exit-with-parent]\n"
                    "                        [--cache-file PATH [--cache-bytes N] [--cache-cut-after N]]\n");
    exit(2);
}

static uint32_t number(const char *s)
{
    char *end;
    unsigned long v = strtoul(s, &end, 0);
    if (*end || v > 0xFFFFFFFFul)
        usage();
    return (uint32_t)v;
}

static void parse_args(int argc, char **argv, options_t *o)
{
    int i;
    memset(o, 0, sizeof *o);
    o->in_fd = o->out_fd = -1;
    o->max_frame = 4096;
    o->max_input = 1u << 20;
    o->max_model = 8u << 20;
    o->rx_window = 1u << 16;
    o->cache_bytes = 1u << 20;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--pty")) {
            o->in_fd = o->out_fd = open_pty();
            if (o->in_fd < 0) {
                perror("k210_runner_host: pty");
                exit(1);
            }
        } else if (!strcmp(a, "--stdio")) {
            o->in_fd = 0;
            o->out_fd = 1;
        } else if (!strcmp(a, "--no-inflate")) {
            o->no_inflate = 1;
        } else if (!strcmp(a, "--exit-with-parent")) {
            o->exit_with_parent = 1;
        } else if (!v) {
            usage();
        } else if (!strcmp(a, "--tty")) {
            o->in_fd = o->out_fd = open(v, O_RDWR | O_NOCTTY);
            if (o->in_fd < 0 || set_raw(o->in_fd) != 0) {
                perror(v);
                exit(1);
            }
            i++;
        } else if (!strcmp(a, "--model")) {
            o->model_path = v;
            i++;
        } else if (!strcmp(a, "--max-frame")) {
            o->max_frame = number(v);
            i++;
        } else if (!strcmp(a, "--max-input")) {
            o->max_input = number(v);
            i++;
        } else if (!strcmp(a, "--max-model")) {
            o->max_model = number(v);
            i++;
        } else if (!strcmp(a, "--rx-window")) {
            o->rx_window = number(v);
            i++;
        } else if (!strcmp(a, "--cache-file")) {
            o->cache_file = v;
            i++;
        } else if (!strcmp(a, "--cache-bytes")) {
            o->cache_bytes = number(v) / FILE_FLASH_SECTOR * FILE_FLASH_SECTOR;
            i++;
        } else if (!strcmp(a, "--cache-cut-after")) {
            o->cache_cut_after = number(v);
            i++;
        } else {
            usage();
        }
    }
    if (o->in_fd < 0 || o->max_frame < K210W_MIN_MAX_FRAME || o->max_frame > 65536u ||
        (o->cache_file && o->cache_bytes < 4u * FILE_FLASH_SECTOR))
        usage();
}

typedef struct {
    file_flash_t file;
    k210s_flash_t flash;
    k210s_store_t store;
    k210s_slot_t *slots;
    uint32_t max_slots;
} cache_t;

/* The sample cache as the board finds it at boot: the region scanned again (the input buffer is the
 * scan's scratch, as on the K210). NULL without --cache-file or if the scan fails (said on stderr). */
static k210s_store_t *open_cache(cache_t *c, const options_t *o, uint8_t *scratch)
{
    if (!o->cache_file)
        return NULL;
    if (!c->slots) {
        if (file_flash_open(&c->file, &c->flash, o->cache_file, o->cache_bytes) != 0) {
            perror(o->cache_file);
            exit(1);
        }
        c->file.cut_after = o->cache_cut_after;
        c->max_slots = o->cache_bytes / CACHE_BYTES_PER_SLOT;
        c->slots = xmalloc(c->max_slots * sizeof *c->slots);
    }
    if (k210s_open(&c->store, &c->flash, c->slots, c->max_slots, scratch, o->max_input) != 0) {
        fprintf(stderr, "k210_runner_host: cannot read the sample cache in %s\n", o->cache_file);
        return NULL;
    }
    if (c->store.skipped)
        fprintf(stderr, "k210_runner_host: %lu cache entries overlap newer ones, skipped\n",
                (unsigned long)c->store.skipped);
    return &c->store;
}

/* Everything a power cycle resets: runner state, nonce, the model loaded from "flash". */
static void boot(k210w_runner_t *r, const k210w_runner_config_t *cfg, arith_backend_t *a, const options_t *o,
                 cache_t *cache)
{
    k210w_io_t io;
    memset(&io, 0, sizeof io);
    a->loaded = 0;
    k210w_runner_config_t c = *cfg;
    c.nonce = random_nonce();
    c.cache = open_cache(cache, o, c.input);
    if (k210w_runner_init(r, &c) != 0) {
        fprintf(stderr, "k210_runner_host: bad runner config\n");
        exit(1);
    }
    if (o->model_path) {
        long n = read_file(o->model_path, a->store, a->store_cap);
        int err = n < 0 ? K210W_E_STORAGE
                        : k210w_runner_load_boot_model(r, a->store, (uint32_t)n, "file", &io);
        k210w_runner_announce(r);
        if (err) {
            char msg[200];
            snprintf(msg, sizeof msg, "boot model %s not loaded: %s", o->model_path,
                     n < 0 ? "cannot read it (or bigger than --max-model)" : r->text);
            k210w_runner_boot_note(r, 3, msg);
        }
        return;
    }
    k210w_runner_announce(r);
}

int main(int argc, char **argv)
{
    static k210w_runner_t runner;
    static arith_backend_t arith;
    static k210w_backend_t backend;
    static cache_t cache;
    k210w_runner_config_t cfg;
    options_t o;
    uint8_t buf[4096];
    parse_args(argc, argv, &o);

    memset(&arith, 0, sizeof arith);
    arith.store_cap = o.max_model;
    arith.store = xmalloc(o.max_model);
    arith.out0_cap = o.max_input;
    arith.out0 = xmalloc(o.max_input);
    arith.now_us = now_us;
    arith_backend_init(&backend, &arith);

    memset(&cfg, 0, sizeof cfg);
    cfg.backend = &backend;
    cfg.write = write_all;
    cfg.write_ctx = &o.out_fd;
    cfg.reboot = request_reboot;
    cfg.max_frame = o.max_frame;
    cfg.rx_window = o.rx_window;
    cfg.max_model = o.max_model;
    cfg.max_input = o.max_input;
    cfg.firmware = FIRMWARE_NAME;
    cfg.fw_version = FIRMWARE_VERSION;
    cfg.rx_enc = xmalloc(K210W_RX_ENC_CAP(o.max_frame));
    cfg.rx_dec = xmalloc(o.max_frame);
    cfg.tx_raw = xmalloc(o.max_frame);
    cfg.tx_enc = xmalloc(K210W_TX_ENC_CAP(o.max_frame));
    cfg.input = xmalloc(o.max_input);
    cfg.packed = o.no_inflate ? NULL : xmalloc(o.max_input);

    boot(&runner, &cfg, &arith, &o, &cache);
    for (;;) {
        ssize_t n;
        if (o.exit_with_parent && o.in_fd != 0) { /* the parent closing our stdin means: leave */
            struct pollfd fds[2] = {{0, POLLIN, 0}, {0, POLLIN, 0}};
            fds[1].fd = o.in_fd;
            if (poll(fds, 2, -1) < 0)
                continue;
            if (fds[0].revents && read(0, buf, sizeof buf) <= 0)
                return 0;
            if (!fds[1].revents)
                continue;
        }
        n = read(o.in_fd, buf, sizeof buf);
        if (n == 0)
            return 0; /* stdin closed */
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            perror("k210_runner_host: read");
            return 1;
        }
        k210w_runner_feed(&runner, buf, (size_t)n);
        if (reboot_requested) {
            reboot_requested = 0;
            boot(&runner, &cfg, &arith, &o, &cache);
        }
    }
}

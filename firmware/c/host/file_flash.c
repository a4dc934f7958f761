#define _XOPEN_SOURCE 700

#include "file_flash.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int read_exact(int fd, uint32_t addr, uint8_t *buf, uint32_t n)
{
    while (n) {
        ssize_t got = pread(fd, buf, n, (off_t)addr);
        if (got <= 0)
            return -1;
        buf += got;
        addr += (uint32_t)got;
        n -= (uint32_t)got;
    }
    return 0;
}

static int write_exact(int fd, uint32_t addr, const uint8_t *buf, uint32_t n)
{
    while (n) {
        ssize_t put = pwrite(fd, buf, n, (off_t)addr);
        if (put <= 0)
            return -1;
        buf += put;
        addr += (uint32_t)put;
        n -= (uint32_t)put;
    }
    return 0;
}

static int ff_read(void *ctx, uint32_t addr, uint8_t *buf, uint32_t n)
{
    return read_exact(((file_flash_t *)ctx)->fd, addr, buf, n);
}

/* NOR programming: a bit can go from 1 to 0 only, so the new bytes are ANDed with what is there. */
static int ff_program(void *ctx, uint32_t addr, const uint8_t *data, uint32_t n)
{
    file_flash_t *f = (file_flash_t *)ctx;
    uint8_t buf[256];
    int cut = 0;
    if (f->cut_after && f->programmed + n >= f->cut_after) {
        n = (uint32_t)(f->cut_after - f->programmed); /* the power goes in the middle of this write */
        cut = 1;
    }
    while (n) {
        uint32_t k = n < sizeof buf ? n : (uint32_t)sizeof buf, i;
        if (read_exact(f->fd, addr, buf, k) != 0)
            return -1;
        for (i = 0; i < k; i++)
            buf[i] &= data[i];
        if (write_exact(f->fd, addr, buf, k) != 0)
            return -1;
        f->programmed += k;
        addr += k;
        data += k;
        n -= k;
    }
    if (cut) {
        fprintf(stderr, "file_flash: power cut after %llu programmed bytes\n", (unsigned long long)f->programmed);
        _exit(FILE_FLASH_CUT_EXIT);
    }
    return 0;
}

static int ff_erase(void *ctx, uint32_t addr)
{
    uint8_t ones[FILE_FLASH_SECTOR];
    memset(ones, 0xFF, sizeof ones);
    return write_exact(((file_flash_t *)ctx)->fd, addr, ones, sizeof ones);
}

int file_flash_open(file_flash_t *f, k210s_flash_t *flash, const char *path, uint32_t size)
{
    struct stat st;
    uint8_t ones[FILE_FLASH_SECTOR];
    memset(f, 0, sizeof *f);
    f->fd = open(path, O_RDWR | O_CREAT, 0644);
    if (f->fd < 0 || fstat(f->fd, &st) != 0)
        return -1;
    memset(ones, 0xFF, sizeof ones);
    for (; st.st_size < (off_t)size; st.st_size += (off_t)sizeof ones) /* new space reads erased */
        if (pwrite(f->fd, ones, sizeof ones, st.st_size) != (ssize_t)sizeof ones)
            return -1;
    memset(flash, 0, sizeof *flash);
    flash->ctx = f;
    flash->size = size;
    flash->sector = FILE_FLASH_SECTOR;
    flash->read = ff_read;
    flash->program = ff_program;
    flash->erase = ff_erase;
    return 0;
}

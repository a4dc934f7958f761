/* A file that behaves as a region of NOR flash (erase to 0xFF by sector, program only clears bits), for
 * the host build's sample store (core/samplestore.h). Tests damage the file between runs, and
 * `cut_after` simulates a power cut: the process exits in the middle of a program once that many
 * bytes were programmed since it started. */
#ifndef FILE_FLASH_H
#define FILE_FLASH_H

#include <stdint.h>

#include "../core/samplestore.h"

#define FILE_FLASH_SECTOR 4096u
#define FILE_FLASH_CUT_EXIT 3 /* the exit status of a simulated power cut */

typedef struct {
    int fd;
    uint64_t programmed;
    uint64_t cut_after; /* 0: never */
} file_flash_t;

/* Opens (or creates) path as a region of `size` bytes (a multiple of FILE_FLASH_SECTOR); bytes the
 * file did not have read as erased. Fills *flash with the callbacks. 0, or -1 (errno set). */
int file_flash_open(file_flash_t *f, k210s_flash_t *flash, const char *path, uint32_t size);

#endif

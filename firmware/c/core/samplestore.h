/* samplestore: the C runner's sample cache (PROTOCOL.md 4.1, modes KEEP and CACHED) in a reserved
 * region of NOR flash, through a block device the board provides (SPI flash on the K210, a file on a PC,
 * RAM under QEMU). Portable C99, no allocation: the board gives the slot table and a scratch buffer.
 *
 * Layout: the region is one circular log of entries, packed back to back (an entry may wrap from the
 * region's end to its start):
 *
 *   0  u8[4]  "K2S1"
 *   4  u32    size: bytes of the tensor
 *   8  u32    seq: +1 per entry written; the highest is the newest entry
 *   12 u8[32] SHA-256 of the tensor
 *   44 u32    commit: CRC-32 of bytes 0..43 (never 0 or 0xFFFFFFFF), programmed last
 *   48 ...    the tensor
 *
 * Power cuts: the header and the tensor are programmed first and the commit word last, so an entry
 * whose write was cut has no valid commit and is skipped by the boot scan (never served); the bytes
 * after the newest entry are not trusted after a boot (the log goes on at the next sector). A
 * deleted entry (damaged, evicted for a slot) gets its commit word programmed to 0. Every read hashes
 * the tensor again and deletes an entry that fails.
 *
 * Space: the log wraps; the sectors ahead of the write position are erased as it needs them, which
 * drops the entries there: the oldest go first. One sector stays between the newest and the oldest
 * entry, so a run of entries of at most `size - sector` bytes in all (header included) is kept whole.
 * An entry bigger than that is not kept. The slot table (12 bytes per entry in RAM) bounds how many
 * entries are kept; when it is full the oldest entry is deleted to make room. */
#ifndef K210S_SAMPLESTORE_H
#define K210S_SAMPLESTORE_H

#include <stddef.h>
#include <stdint.h>

#define K210S_HEAD_LEN 48u
#define K210S_MISSING (-1L) /* k210s_load: no entry for that hash */
#define K210S_DAMAGED (-2L) /* k210s_load: an entry that failed its checks (now deleted) */
/* Samples of at least this many bytes are what the announced size is honest for (see k210s_caps_log2). */
#define K210S_MIN_SAMPLE 216u

/* NOR flash semantics: erase sets a whole sector to 0xFF; program only clears bits, on bytes the
 * caller erased. Addresses are offsets in the region. Functions return 0 on success. */
typedef struct {
    void *ctx;
    uint32_t size;   /* bytes of the region: a multiple of sector, at least 4 sectors */
    uint32_t sector; /* erase unit, bytes: a power of two, at least K210S_HEAD_LEN */
    int (*read)(void *ctx, uint32_t addr, uint8_t *buf, uint32_t n);
    int (*program)(void *ctx, uint32_t addr, const uint8_t *data, uint32_t n);
    int (*erase)(void *ctx, uint32_t addr); /* the sector starting at addr */
} k210s_flash_t;

typedef struct {
    uint32_t pos; /* where the entry starts in the region */
    uint32_t len; /* header + tensor */
    uint32_t key; /* the SHA-256's first 4 bytes, little-endian (the header holds all 32) */
} k210s_slot_t;

typedef struct {
    const k210s_flash_t *flash;
    k210s_slot_t *slots; /* oldest first */
    uint32_t max_slots, count;
    uint32_t head;   /* where the next entry goes */
    uint32_t erased; /* bytes from head on that are known erased; (head + erased) is on a sector boundary */
    uint32_t next_seq;
    /* Figures (since boot): */
    uint32_t stored, hits, misses, damaged, failed, skipped;
} k210s_store_t;

/* Scans the region (scratch: any buffer of at least 2 * K210S_HEAD_LEN bytes, used only during the
 * call; the runner's input buffer does) and builds the slot table from the committed entries.
 * Returns 0, or -1 if the geometry is unusable or the flash cannot be read. */
int k210s_open(k210s_store_t *s, const k210s_flash_t *flash, k210s_slot_t *slots, uint32_t max_slots,
               uint8_t *scratch, uint32_t scratch_len);

/* floor(log2(bytes of samples the host may plan to keep)), for HELLO's caps; 0: too small to use. */
uint8_t k210s_caps_log2(const k210s_store_t *s);

/* Reads the tensor kept under sha into buf (cap bytes); its size, K210S_MISSING or K210S_DAMAGED. */
long k210s_load(k210s_store_t *s, const uint8_t sha[32], uint8_t *buf, uint32_t cap);

/* Keeps data (n bytes, already checked against sha by the caller) under sha: 1 if kept (or already there
 * and reading back the same bytes; an entry that does not is replaced), 0 if not (too big for the region,
 * or a flash error: the sample just stays unkept). */
int k210s_keep(k210s_store_t *s, const uint8_t sha[32], const uint8_t *data, uint32_t n);

#endif

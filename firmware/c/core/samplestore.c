/* samplestore.c: the layout, power-cut and eviction rules are in samplestore.h. */
#include "samplestore.h"

#include <stdlib.h>
#include <string.h>

#include "crc32.h"
#include "sha256.h"

#define COMMIT_AT 44u /* the commit word's offset in the header */

static const uint8_t MAGIC[4] = {'K', '2', 'S', '1'};

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t wrap(const k210s_store_t *s, uint32_t pos)
{
    return pos >= s->flash->size ? pos - s->flash->size : pos;
}

/* Reads and programs split where the log wraps from the region's end to its start. */
static int read_at(const k210s_store_t *s, uint32_t pos, uint8_t *buf, uint32_t n)
{
    const k210s_flash_t *f = s->flash;
    uint32_t first = f->size - pos < n ? f->size - pos : n;
    if (f->read(f->ctx, pos, buf, first) != 0)
        return -1;
    return first < n ? f->read(f->ctx, 0, buf + first, n - first) : 0;
}

static int program_at(const k210s_store_t *s, uint32_t pos, const uint8_t *data, uint32_t n)
{
    const k210s_flash_t *f = s->flash;
    uint32_t first = f->size - pos < n ? f->size - pos : n;
    if (f->program(f->ctx, pos, data, first) != 0)
        return -1;
    return first < n ? f->program(f->ctx, 0, data + first, n - first) : 0;
}

/* The commit word of a header's first 44 bytes; 0 when the header cannot be committed as it is. */
static uint32_t commit_of(const uint8_t *head)
{
    uint32_t c = k210w_crc32(0, head, COMMIT_AT);
    return c == 0 || c == 0xFFFFFFFFu ? 0 : c;
}

/* The entry's length (header + tensor) if head[] is a committed header that fits the region, else 0. */
static uint32_t valid_len(const k210s_store_t *s, const uint8_t *head)
{
    uint32_t size = le32(head + 4), commit = commit_of(head);
    if (memcmp(head, MAGIC, 4) != 0 || commit == 0 || le32(head + COMMIT_AT) != commit || size == 0 ||
        size > s->flash->size - s->flash->sector - K210S_HEAD_LEN)
        return 0;
    return size + K210S_HEAD_LEN;
}

/* ---- the slot table ---- */

static void remove_slot(k210s_store_t *s, uint32_t i)
{
    memmove(&s->slots[i], &s->slots[i + 1], (s->count - i - 1u) * sizeof s->slots[0]);
    s->count--;
}

/* Deletes entry i: its commit word becomes 0 on flash (programming only clears bits), so no later
 * boot finds it. A failed program changes nothing that matters: the entry leaves the table anyway. */
static void delete_slot(k210s_store_t *s, uint32_t i)
{
    static const uint8_t zero[4] = {0, 0, 0, 0};
    (void)program_at(s, wrap(s, s->slots[i].pos + COMMIT_AT), zero, 4);
    remove_slot(s, i);
}

/* Does [pos, pos + len) (circular) meet the sector at sec? */
static int overlaps_sector(const k210s_store_t *s, const k210s_slot_t *e, uint32_t sec)
{
    uint32_t size = s->flash->size;
    uint32_t into = (sec + size - e->pos) % size; /* from the entry's start to the sector's */
    uint32_t back = (e->pos + size - sec) % size; /* from the sector's start to the entry's */
    return into < e->len || back < s->flash->sector;
}

/* Erases the next sector ahead of the write position; the entries it held leave the table first. */
static int erase_ahead(k210s_store_t *s)
{
    uint32_t sec = wrap(s, s->head + s->erased), i = 0;
    while (i < s->count) {
        if (overlaps_sector(s, &s->slots[i], sec))
            remove_slot(s, i);
        else
            i++;
    }
    if (s->flash->erase(s->flash->ctx, sec) != 0) {
        s->head = wrap(s, sec + s->flash->sector); /* that sector's state is unknown: skip it */
        s->erased = 0;
        return -1;
    }
    s->erased += s->flash->sector;
    return 0;
}

/* Slot i's header, if it is still a committed header of the slot's length. */
static int read_header(const k210s_store_t *s, uint32_t i, uint8_t head[K210S_HEAD_LEN])
{
    return read_at(s, s->slots[i].pos, head, K210S_HEAD_LEN) == 0 && valid_len(s, head) == s->slots[i].len ? 0 : -1;
}

/* The slot holding sha: its index, -1 if none, -2 (with *damaged_at) if a slot with sha's key has a
 * header that no longer reads back. */
static long find(const k210s_store_t *s, const uint8_t sha[32], uint32_t *damaged_at)
{
    uint32_t key = le32(sha), i;
    uint8_t head[K210S_HEAD_LEN];
    for (i = s->count; i-- > 0;) {
        if (s->slots[i].key != key)
            continue;
        if (read_header(s, i, head) != 0) {
            *damaged_at = i;
            return -2;
        }
        if (memcmp(head + 12, sha, 32) == 0)
            return (long)i;
    }
    return -1;
}

/* ---- boot scan ---- */

static int by_distance(const void *a, const void *b)
{
    uint32_t x = ((const k210s_slot_t *)a)->pos, y = ((const k210s_slot_t *)b)->pos;
    return x < y ? -1 : x > y;
}

/* Calls found(s, pos, head) for every committed header in the region; -1 on a read error. */
static int scan(k210s_store_t *s, uint8_t *buf, uint32_t cap, void (*found)(k210s_store_t *, uint32_t, const uint8_t *))
{
    uint32_t size = s->flash->size, step = cap - 3u, off, i;
    uint8_t head[K210S_HEAD_LEN];
    for (off = 0; off < size; off += step) {
        uint32_t n = size - off < step ? size - off : step;
        if (read_at(s, off, buf, n + 3u) != 0) /* 3 more bytes: a magic across the chunk's end */
            return -1;
        for (i = 0; i < n; i++) {
            if (buf[i] != MAGIC[0] || memcmp(buf + i, MAGIC, 4) != 0)
                continue;
            if (read_at(s, off + i, head, K210S_HEAD_LEN) != 0)
                return -1;
            if (valid_len(s, head))
                found(s, off + i, head);
        }
    }
    return 0;
}

static void note_newest(k210s_store_t *s, uint32_t pos, const uint8_t *head)
{
    uint32_t seq = le32(head + 8);
    if (s->count == 0 || seq >= s->next_seq) {
        s->next_seq = seq + 1u;
        s->head = wrap(s, pos + valid_len(s, head));
        s->count = 1;
    }
}

/* Collects entries as (distance back from the write position, length); with the table full, a newer
 * entry replaces the oldest one collected. */
static void collect(k210s_store_t *s, uint32_t pos, const uint8_t *head)
{
    uint32_t size = s->flash->size, dist = (s->head + size - pos) % size, i, oldest = 0;
    k210s_slot_t e;
    e.pos = dist ? dist : size; /* an entry starting at the write position is a whole lap old */
    e.len = valid_len(s, head);
    e.key = le32(head + 12);
    if (s->count < s->max_slots) {
        s->slots[s->count++] = e;
        return;
    }
    for (i = 1; i < s->count; i++)
        if (s->slots[i].pos > s->slots[oldest].pos)
            oldest = i;
    if (e.pos < s->slots[oldest].pos)
        s->slots[oldest] = e;
}

/* Newest first, an entry is kept only if it ends where (or before) the next newer one starts: what
 * overlaps a newer entry (a stale header) is not part of the log. Then the table goes oldest first. */
static void order_slots(k210s_store_t *s)
{
    uint32_t size = s->flash->size, kept = 0, reach = 0, i;
    qsort(s->slots, s->count, sizeof s->slots[0], by_distance);
    for (i = 0; i < s->count; i++) {
        k210s_slot_t e = s->slots[i];
        if (e.pos < reach + e.len) {
            s->skipped++;
            continue;
        }
        reach = e.pos;
        s->slots[kept++] = e;
    }
    s->count = kept;
    for (i = 0; i < kept / 2u; i++) {
        k210s_slot_t t = s->slots[i];
        s->slots[i] = s->slots[kept - 1u - i];
        s->slots[kept - 1u - i] = t;
    }
    for (i = 0; i < kept; i++)
        s->slots[i].pos = (s->head + size - s->slots[i].pos) % size;
}

/* After a boot the bytes behind the newest entry may hold a write that was cut: the log goes on there
 * only if the rest of that sector reads erased, else at the next sector. */
static int place_head(k210s_store_t *s, uint8_t *buf, uint32_t cap)
{
    uint32_t sector = s->flash->sector, left = (sector - s->head % sector) % sector, i;
    s->erased = 0;
    if (!left)
        return 0;
    while (left) {
        uint32_t n = left < cap ? left : cap, at = s->head + s->erased;
        if (read_at(s, at, buf, n) != 0)
            return -1;
        for (i = 0; i < n; i++)
            if (buf[i] != 0xFF) {
                s->head = wrap(s, s->head + s->erased + left);
                s->erased = 0;
                return 0;
            }
        s->erased += n;
        left -= n;
    }
    return 0;
}

int k210s_open(k210s_store_t *s, const k210s_flash_t *flash, k210s_slot_t *slots, uint32_t max_slots,
               uint8_t *scratch, uint32_t scratch_len)
{
    memset(s, 0, sizeof *s);
    s->flash = flash;
    s->slots = slots;
    s->max_slots = max_slots;
    if (!flash || !slots || !max_slots || !scratch || scratch_len < 2u * K210S_HEAD_LEN || flash->sector <
        K210S_HEAD_LEN || (flash->sector & (flash->sector - 1u)) || flash->size % flash->sector ||
        flash->size / flash->sector < 4u)
        return -1;
    /* Two passes: the newest entry (highest seq) fixes the write position, then every entry is placed
     * by its distance behind it. */
    if (scan(s, scratch, scratch_len, note_newest) != 0)
        return -1;
    if (s->count) {
        s->count = 0;
        if (scan(s, scratch, scratch_len, collect) != 0)
            return -1;
        order_slots(s);
    }
    return place_head(s, scratch, scratch_len);
}

uint8_t k210s_caps_log2(const k210s_store_t *s)
{
    /* The host counts tensor + 40 bytes per entry (PROTOCOL.md 4.1); an entry here takes tensor + 48 and a
     * slot. For samples of K210S_MIN_SAMPLE bytes or more, announcing B keeps every planned entry whole:
     * B * 264/256 <= size - sector, and B / 256 <= max_slots. */
    unsigned long long room = (unsigned long long)(s->flash->size - s->flash->sector) * 256u / 264u;
    unsigned long long by_slots = (unsigned long long)s->max_slots * (K210S_MIN_SAMPLE + 40u);
    unsigned long long b = room < by_slots ? room : by_slots;
    uint8_t n = 0;
    while ((2ull << n) <= b && n < 255u)
        n++;
    return b >= 2u * K210S_HEAD_LEN ? n : 0;
}

long k210s_load(k210s_store_t *s, const uint8_t sha[32], uint8_t *buf, uint32_t cap)
{
    uint32_t at = 0;
    long i = find(s, sha, &at);
    uint8_t digest[32];
    if (i == -1) {
        s->misses++;
        return K210S_MISSING;
    }
    if (i >= 0) {
        uint32_t size = s->slots[i].len - K210S_HEAD_LEN;
        at = (uint32_t)i;
        /* Hashed again on every read: a flash that lost bits never feeds the model. */
        if (size <= cap && read_at(s, wrap(s, s->slots[at].pos + K210S_HEAD_LEN), buf, size) == 0) {
            k210w_sha256(buf, size, digest);
            if (memcmp(digest, sha, 32) == 0) {
                s->hits++;
                return (long)size;
            }
        }
    }
    s->damaged++;
    delete_slot(s, at);
    return K210S_DAMAGED;
}

/* Does entry i hold exactly data[0..n)? Read back piece by piece (the input buffer holds data). */
static int holds(const k210s_store_t *s, uint32_t i, const uint8_t *data, uint32_t n)
{
    uint8_t piece[256];
    uint32_t done, pos = wrap(s, s->slots[i].pos + K210S_HEAD_LEN);
    if (s->slots[i].len != K210S_HEAD_LEN + n)
        return 0;
    for (done = 0; done < n; done += (uint32_t)sizeof piece) {
        uint32_t k = n - done < sizeof piece ? n - done : (uint32_t)sizeof piece;
        if (read_at(s, wrap(s, pos + done), piece, k) != 0 || memcmp(piece, data + done, k) != 0)
            return 0;
    }
    return 1;
}

int k210s_keep(k210s_store_t *s, const uint8_t sha[32], const uint8_t *data, uint32_t n)
{
    uint32_t at = 0, need = K210S_HEAD_LEN + n, pos;
    uint8_t head[K210S_HEAD_LEN];
    long i = find(s, sha, &at);
    if (i >= 0 && holds(s, (uint32_t)i, data, n))
        return 1; /* kept before and still intact */
    if (i >= 0)
        at = (uint32_t)i;
    if (i != -1)
        delete_slot(s, at); /* an entry under this hash that went bad: a fresh one replaces it */
    if (n == 0 || n > s->flash->size - s->flash->sector - K210S_HEAD_LEN) {
        s->failed++;
        return 0;
    }
    if (s->count == s->max_slots)
        delete_slot(s, 0);
    while (s->erased < need)
        if (erase_ahead(s) != 0) {
            s->failed++;
            return 0;
        }
    memcpy(head, MAGIC, 4);
    put_le32(head + 4, n);
    memcpy(head + 12, sha, 32);
    do { /* a header whose CRC is 0 or all ones could not be told from a deleted or blank one */
        put_le32(head + 8, s->next_seq++);
    } while (commit_of(head) == 0);
    put_le32(head + COMMIT_AT, commit_of(head));
    pos = s->head;
    s->head = wrap(s, pos + need); /* whatever happens next, these bytes are used */
    s->erased -= need;
    /* Header and tensor first, the commit word last: only a complete entry is ever committed. */
    if (program_at(s, pos, head, COMMIT_AT) != 0 ||
        program_at(s, wrap(s, pos + K210S_HEAD_LEN), data, n) != 0 ||
        program_at(s, wrap(s, pos + COMMIT_AT), head + COMMIT_AT, 4) != 0) {
        s->failed++;
        return 0;
    }
    s->slots[s->count].pos = pos;
    s->slots[s->count].len = need;
    s->slots[s->count].key = le32(sha);
    s->count++;
    s->stored++;
    return 1;
}

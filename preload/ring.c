/* ring.c - lock-free append into the dump's event ring.
 * Reservation is one fetch-add; a record becomes visible when its header's
 * `pos` is stored last, so a crash mid-write leaves a record readers skip;
 * a writer a newer lap overtook marks where its bytes went (format.h).
 */
#include <string.h>

#include "stalltrace/format.h"
#include "ring.h"

/* Copy into the ring at byte offset `off`, continuing at 0 past the end. */
static void ring_copy_in(struct st_ring *ring, uint64_t off, const uint8_t *src, uint64_t n)
{
    uint64_t first = ring->size - off;
    if (first >= n) {
        memcpy(ring->base + off, src, n);
    } else {
        memcpy(ring->base + off, src, first);
        memcpy(ring->base, src + first, n - first);
    }
}

static void ring_zero(struct st_ring *ring, uint64_t off, uint64_t n)
{
    static const uint8_t zeros[ST_RECORD_ALIGN];
    while (n > 0) {
        uint64_t k = n < sizeof zeros ? n : sizeof zeros;
        ring_copy_in(ring, off, zeros, k);
        off = (off + k) & (ring->size - 1);
        n -= k;
    }
}

static uint64_t aligned_len(uint32_t len)
{
    return ((uint64_t)len + ST_RECORD_ALIGN - 1) & ~(uint64_t)(ST_RECORD_ALIGN - 1);
}

/* A write that was lapped may have put its bytes over committed records of
 * a newer lap (format.h, "Lapped writers"): mark where, so readers reject
 * them. A slot is free when empty or when no live record can be reserved
 * below its mark any more. */
static void ring_mark_damage(struct st_ring *ring, uint64_t pos, uint64_t aligned, uint64_t head)
{
    struct st_file_header *h = ring->hdr;
    if (h == NULL)
        return;
    __atomic_fetch_add(&h->ring_lapped, 1, __ATOMIC_RELAXED);
    uint64_t span = (pos & (ring->size - 1)) | aligned << 32;
    for (unsigned i = 0; i < ST_RING_DAMAGE_SLOTS; i++) {
        struct st_ring_damage *d = &h->ring_damage[i];
        uint64_t until = __atomic_load_n(&d->until, __ATOMIC_ACQUIRE);
        int obsolete = until > 1 && until <= head - ring->size;
        if ((until == 0 || obsolete) &&
            __atomic_compare_exchange_n(&d->until, &until, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            __atomic_store_n(&d->span, span, __ATOMIC_RELAXED);
            __atomic_store_n(&d->until, head, __ATOMIC_RELEASE);
            return;
        }
    }
    /* Every slot busy: coarser, but still every damaged record is rejected. */
    uint64_t below = __atomic_load_n(&h->ring_suspect_below, __ATOMIC_RELAXED);
    while (below < head && !__atomic_compare_exchange_n(&h->ring_suspect_below, &below, head, 1,
                                                        __ATOMIC_RELEASE, __ATOMIC_RELAXED))
        ;
}

int st_ring_reserve(struct st_ring *ring, uint32_t len, uint64_t *pos)
{
    uint64_t aligned = aligned_len(len);
    if (ring->base == NULL || len < sizeof(struct st_record) || aligned > ring->size / 2)
        return -1;
    /* Sequentially consistent: this writer's stores come after the
     * reservation, as a lapped writer's head check assumes. */
    *pos = __atomic_fetch_add(ring->head, aligned, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(ring->records, 1, __ATOMIC_RELAXED);
    return 0;
}

void st_ring_write(struct st_ring *ring, uint64_t pos, uint16_t type, void *rec, uint32_t len)
{
    uint64_t aligned = aligned_len(len);
    uint64_t off = pos & (ring->size - 1);
    struct st_record *hdr = (struct st_record *)(ring->base + off);

    /* Uncommit whatever stale record sits here before its bytes change. */
    __atomic_store_n(&hdr->pos, ~(uint64_t)0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);

    uint64_t body = sizeof(struct st_record);
    ring_copy_in(ring, (off + body) & (ring->size - 1), (const uint8_t *)rec + body, len - body);
    if (aligned > len)
        ring_zero(ring, (off + len) & (ring->size - 1), aligned - len);
    hdr->size = (uint32_t)aligned;
    hdr->type = type;
    hdr->magic = ST_RECORD_MAGIC;
    __atomic_store_n(&hdr->pos, pos, __ATOMIC_RELEASE);

    /* Lapped? Only once every store above is done: a record reserved past
     * the head read here was written after them all. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    uint64_t head = __atomic_load_n(ring->head, __ATOMIC_RELAXED);
    if (head > pos + ring->size)
        ring_mark_damage(ring, pos, aligned, head);
}

int st_ring_put(struct st_ring *ring, uint16_t type, void *rec, uint32_t len)
{
    uint64_t pos;
    if (st_ring_reserve(ring, len, &pos) < 0)
        return -1;
    st_ring_write(ring, pos, type, rec, len);
    return 0;
}

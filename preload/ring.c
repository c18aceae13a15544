/* ring.c - lock-free append into the dump's event ring.
 * Reservation is one fetch-add; a record becomes visible when its header's
 * `pos` is stored last, so a crash mid-write leaves a record readers skip.
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

int st_ring_put(struct st_ring *ring, uint16_t type, void *rec, uint32_t len)
{
    uint64_t aligned = ((uint64_t)len + ST_RECORD_ALIGN - 1) & ~(uint64_t)(ST_RECORD_ALIGN - 1);
    if (ring->base == NULL || len < sizeof(struct st_record) || aligned > ring->size / 2)
        return -1;

    uint64_t pos = __atomic_fetch_add(ring->head, aligned, __ATOMIC_RELAXED);
    __atomic_fetch_add(ring->records, 1, __ATOMIC_RELAXED);
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
    return 0;
}

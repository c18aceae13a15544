/* ring.h - the multi-writer event ring inside the dump (writer side).
 * A plain C unit with no dependency on the rest of the recorder, so the
 * criterion tests link it directly; the layout is described in format.h.
 */
#ifndef STALLTRACE_RING_H
#define STALLTRACE_RING_H

#include <stdint.h>

#include "stalltrace/format.h"

struct st_ring {
    uint8_t *base;          /* ring_size bytes */
    uint64_t size;          /* power of two, multiple of ST_RECORD_ALIGN, at most 4 GiB */
    uint64_t *head;         /* -> st_file_header.ring_head */
    uint64_t *records;      /* -> st_file_header.ring_records */
    struct st_file_header *hdr;   /* its lapped-writer fields: ring_lapped, ring_damage... */
};

/* Append one record. `rec` starts with a struct st_record whose fields are
 * filled here; `len` is the record's length in bytes (rounded up to
 * ST_RECORD_ALIGN). Lock-free, async-signal-safe. Returns 0, or -1 when the
 * record can never fit. */
int st_ring_put(struct st_ring *ring, uint16_t type, void *rec, uint32_t len);

/* st_ring_put in its two steps, so a test can delay a writer between them
 * as a preempted thread is: reserve returns the record's position (or -1 as
 * st_ring_put does), write fills and commits it there. */
int st_ring_reserve(struct st_ring *ring, uint32_t len, uint64_t *pos);
void st_ring_write(struct st_ring *ring, uint64_t pos, uint16_t type, void *rec, uint32_t len);

#endif

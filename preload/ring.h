/* ring.h - the multi-writer event ring inside the dump (writer side).
 * A plain C unit with no dependency on the rest of the recorder, so the
 * criterion tests link it directly; the layout is described in format.h.
 */
#ifndef STALLTRACE_RING_H
#define STALLTRACE_RING_H

#include <stdint.h>

struct st_ring {
    uint8_t *base;          /* ring_size bytes */
    uint64_t size;          /* power of two, multiple of ST_RECORD_ALIGN */
    uint64_t *head;         /* -> st_file_header.ring_head */
    uint64_t *records;      /* -> st_file_header.ring_records */
};

/* Append one record. `rec` starts with a struct st_record whose fields are
 * filled here; `len` is the record's length in bytes (rounded up to
 * ST_RECORD_ALIGN). Lock-free, async-signal-safe. Returns 0, or -1 when the
 * record can never fit. */
int st_ring_put(struct st_ring *ring, uint16_t type, void *rec, uint32_t len);

#endif

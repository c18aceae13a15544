/* dump_builder.h - test helper: builds a synthetic stalltrace dump in memory
 * exactly as format.h lays it out, so the reader is tested without a recorder. */
#ifndef STALLTRACE_DUMP_BUILDER_H
#define STALLTRACE_DUMP_BUILDER_H

#include <stddef.h>
#include <stdint.h>

#include "stalltrace/format.h"

struct dump_builder {
    uint8_t *buf;
    size_t len;
    uint64_t ring_size;
};

/* A dump with room for the given slots and a ring of ring_size bytes. */
struct dump_builder *db_new(uint32_t module_capacity, uint32_t thread_capacity, uint64_t ring_size);
/* The same with an object table of object_capacity slots. */
struct dump_builder *db_new_objects(uint32_t module_capacity, uint32_t thread_capacity,
                                    uint32_t object_capacity, uint64_t ring_size);
void db_free(struct dump_builder *b);

/* Direct access to the sections (valid until db_free). */
struct st_file_header *db_header(struct dump_builder *b);
struct st_process *db_process(struct dump_builder *b);

void db_set_process(struct dump_builder *b, int32_t pid, const char *exe, int argc,
                    const char *const *argv);
struct st_module *db_add_module(struct dump_builder *b, const char *path, uint64_t start,
                                uint64_t end, uint64_t bias, uint32_t flags);
struct st_thread *db_add_thread(struct dump_builder *b, uint32_t tid, const char *name,
                                uint32_t flags);

/* A thread slot claimed and freed again (tid 0): later slots keep their index. */
void db_add_free_thread_slot(struct dump_builder *b);

/* A sync object in the next free slot of the object table. */
struct st_object *db_add_object(struct dump_builder *b, uint64_t addr, uint32_t kind);
/* Set bit `slot` of an object's member or waker bitmap. */
void db_set_bit(uint64_t *bits, uint32_t slot);

/* Append a committed record of the given type; payload follows the 16-byte
 * record header. Returns its absolute position. */
uint64_t db_append(struct dump_builder *b, uint16_t type, const void *payload, size_t payload_len);

/* Reserve a record of size bytes but never commit it (a torn write: the
 * commit word keeps what was there). Counts in ring_records. */
uint64_t db_append_torn(struct dump_builder *b, uint32_t size);

uint64_t db_stall(struct dump_builder *b, uint32_t tid, uint16_t call, uint64_t iter_seq,
                  uint64_t start_ns, uint64_t busy_ns, const uint64_t *frames, uint16_t nframes);
uint64_t db_sample(struct dump_builder *b, uint32_t tid, uint64_t iter_seq, uint64_t at_ns,
                   const uint64_t *frames, uint16_t nframes);
uint64_t db_slow_call(struct dump_builder *b, uint32_t tid, uint16_t call, uint64_t start_ns,
                      uint64_t duration_ns, const uint64_t *frames, uint16_t nframes);

uint64_t db_lock_wait(struct dump_builder *b, uint32_t tid, uint16_t call, uint16_t kind, uint64_t object,
                      uint64_t start_ns, uint64_t duration_ns, uint32_t retries, const uint64_t *frames,
                      uint16_t nframes);
/* Who held the lock a wait was for (holder_tid 0: readers, their count). */
uint64_t db_lock_holder(struct dump_builder *b, uint32_t waiter, uint32_t holder_tid, uint32_t readers,
                        uint16_t call, uint16_t kind, uint64_t object, uint64_t wait_start_ns,
                        uint64_t held_ns);
uint64_t db_saturation(struct dump_builder *b, uint64_t object, uint64_t start_ns, uint64_t duration_ns,
                       uint32_t members);

/* One call kind of a stalled iteration, and the stalled thread's CPU figures. */
uint64_t db_stall_call(struct dump_builder *b, uint32_t tid, uint16_t call, uint64_t iter_seq,
                       uint16_t count, uint64_t total_ns, uint64_t max_ns, const uint64_t *frames,
                       uint16_t nframes);
uint64_t db_stall_cpu(struct dump_builder *b, uint32_t tid, uint64_t iter_seq, uint64_t window_ns,
                      uint64_t cpu_ns, uint64_t runq_ns);
/* A JIT code range named as V8's perf map names it ("JS:*fn /app.js:12:3"). */
uint64_t db_jitsym(struct dump_builder *b, uint64_t start, uint32_t size, const char *name);

/* Mark the dump as cleanly ended. */
void db_complete(struct dump_builder *b, uint64_t last_update_ns);

/* Write the dump to path; 0 on success. */
int db_write(const struct dump_builder *b, const char *path);

#endif /* STALLTRACE_DUMP_BUILDER_H */

/* dump_builder.c - test helper: lays out header, process, module and thread
 * tables and a ring of committed (or torn) records, as the recorder would. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dump_builder.h"

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) / a * a;
}

struct st_file_header *db_header(struct dump_builder *b)
{
    return (struct st_file_header *)b->buf;
}

struct st_process *db_process(struct dump_builder *b)
{
    return (struct st_process *)(b->buf + db_header(b)->process_offset);
}

struct dump_builder *db_new(uint32_t module_capacity, uint32_t thread_capacity, uint64_t ring_size)
{
    return db_new_objects(module_capacity, thread_capacity, 0, ring_size);
}

struct dump_builder *db_new_objects(uint32_t module_capacity, uint32_t thread_capacity,
                                    uint32_t object_capacity, uint64_t ring_size)
{
    struct dump_builder *b = calloc(1, sizeof(*b));
    uint64_t off = align_up(sizeof(struct st_file_header), ST_SECTION_ALIGN);
    struct st_file_header h;

    memset(&h, 0, sizeof(h));
    memcpy(h.magic, ST_MAGIC, 8);
    h.version = ST_FORMAT_VERSION;
    h.endian = ST_ENDIAN_MARK;
    h.header_size = sizeof(h);
    h.process_offset = off;
    h.process_size = sizeof(struct st_process);
    off = align_up(off + h.process_size, ST_SECTION_ALIGN);
    h.modules_offset = off;
    h.module_size = sizeof(struct st_module);
    h.module_capacity = module_capacity;
    off = align_up(off + (uint64_t)module_capacity * h.module_size, ST_SECTION_ALIGN);
    h.threads_offset = off;
    h.thread_size = sizeof(struct st_thread);
    h.thread_capacity = thread_capacity;
    off = align_up(off + (uint64_t)thread_capacity * h.thread_size, ST_SECTION_ALIGN);
    if (object_capacity > 0) {
        h.objects_offset = off;
        h.object_size = sizeof(struct st_object);
        h.object_capacity = object_capacity;
        off = align_up(off + (uint64_t)object_capacity * h.object_size, ST_SECTION_ALIGN);
    }
    h.ring_offset = off;
    h.ring_size = ring_size;
    h.file_size = off + ring_size;
    h.start_mono_ns = 1000;
    h.start_real_ns = 1700000000ull * 1000000000ull;
    h.threshold_ns = 20 * 1000000ull;
    h.sample_interval_ns = 10 * 1000000ull;
    snprintf(h.recorder_version, sizeof(h.recorder_version), "stalltrace test");
    snprintf(h.unwinder, sizeof(h.unwinder), "synthetic");

    b->len = h.file_size;
    b->buf = calloc(1, b->len);
    b->ring_size = ring_size;
    memcpy(b->buf, &h, sizeof(h));
    return b;
}

void db_free(struct dump_builder *b)
{
    if (!b)
        return;
    free(b->buf);
    free(b);
}

void db_set_process(struct dump_builder *b, int32_t pid, const char *exe, int argc,
                    const char *const *argv)
{
    struct st_process *p = db_process(b);
    size_t used = 0;
    int i;

    p->pid = pid;
    p->parent_pid = 1;
    snprintf(p->exe, sizeof(p->exe), "%s", exe);
    for (i = 0; i < argc; i++) {
        size_t n = strlen(argv[i]) + 1;
        memcpy(p->argv + used, argv[i], n);
        used += n;
    }
    p->argc = (uint32_t)argc;
    p->argv_len = (uint32_t)used;
}

struct st_module *db_add_module(struct dump_builder *b, const char *path, uint64_t start,
                                uint64_t end, uint64_t bias, uint32_t flags)
{
    struct st_file_header *h = db_header(b);
    struct st_module *m = (struct st_module *)(b->buf + h->modules_offset +
                                               (uint64_t)h->module_count * h->module_size);

    h->module_count++;
    m->flags = flags;
    m->start = start;
    m->end = end;
    m->bias = bias;
    snprintf(m->path, sizeof(m->path), "%s", path);
    m->valid = 1;
    return m;
}

struct st_thread *db_add_thread(struct dump_builder *b, uint32_t tid, const char *name,
                                uint32_t flags)
{
    struct st_file_header *h = db_header(b);
    struct st_thread *t = (struct st_thread *)(b->buf + h->threads_offset +
                                               (uint64_t)h->thread_count * h->thread_size);

    h->thread_count++;
    t->tid = tid;
    t->flags = flags;
    snprintf(t->name, sizeof(t->name), "%s", name);
    return t;
}

void db_add_free_thread_slot(struct dump_builder *b)
{
    db_header(b)->thread_count++;
}

struct st_object *db_add_object(struct dump_builder *b, uint64_t addr, uint32_t kind)
{
    struct st_file_header *h = db_header(b);
    struct st_object *o = (struct st_object *)(b->buf + h->objects_offset +
                                               (uint64_t)h->object_count * h->object_size);

    h->object_count++;
    o->addr = addr;
    o->kind = kind;
    return o;
}

void db_set_bit(uint64_t *bits, uint32_t slot)
{
    bits[slot / 64] |= (uint64_t)1 << (slot % 64);
}

/* Copy bytes to absolute ring position pos, wrapping at the end. */
static void ring_put(struct dump_builder *b, uint64_t pos, const void *src, size_t n)
{
    uint8_t *ring = b->buf + db_header(b)->ring_offset;
    size_t i;

    for (i = 0; i < n; i++)
        ring[(pos + i) & (b->ring_size - 1)] = ((const uint8_t *)src)[i];
}

uint64_t db_append(struct dump_builder *b, uint16_t type, const void *payload, size_t payload_len)
{
    struct st_file_header *h = db_header(b);
    struct st_record r;
    uint64_t pos = h->ring_head;
    uint32_t size = (uint32_t)align_up(sizeof(r) + payload_len, ST_RECORD_ALIGN);
    static const uint8_t zero[ST_RECORD_ALIGN];

    /* Reserve, fill, commit: the order the recorder follows, so a reader
     * running alongside (the live test) sees what it would see. */
    __atomic_store_n(&h->ring_head, pos + size, __ATOMIC_SEQ_CST);
    __atomic_store_n(&h->ring_records, h->ring_records + 1, __ATOMIC_SEQ_CST);
    r.pos = pos;
    r.size = size;
    r.type = type;
    r.magic = ST_RECORD_MAGIC;
    ring_put(b, pos + sizeof(r), payload, payload_len);
    ring_put(b, pos + sizeof(r) + payload_len, zero, size - sizeof(r) - payload_len);
    ring_put(b, pos + sizeof(r.pos), (uint8_t *)&r + sizeof(r.pos), sizeof(r) - sizeof(r.pos));
    uint64_t *commit = (uint64_t *)(b->buf + h->ring_offset + (pos & (b->ring_size - 1)));
    __atomic_store_n(commit, pos, __ATOMIC_RELEASE);   /* the commit word, last */
    return pos;
}

uint64_t db_append_torn(struct dump_builder *b, uint32_t size)
{
    struct st_file_header *h = db_header(b);
    struct st_record r;
    uint64_t pos = h->ring_head;

    h->ring_head += size;
    h->ring_records++;
    /* Size and type were written, the commit word was not. */
    r.pos = pos + 12345;
    r.size = size;
    r.type = ST_REC_STALL;
    r.magic = ST_RECORD_MAGIC;
    ring_put(b, pos, &r, sizeof(r));
    return pos;
}

/* Record payload (after the record header) followed by a stack. */
static uint64_t append_with_stack(struct dump_builder *b, uint16_t type, const void *fixed,
                                  size_t fixed_len, const uint64_t *frames, uint16_t nframes)
{
    struct st_stack s = {.nframes = nframes, .unwinder = ST_UNWIND_LIBUNWIND};
    size_t len = fixed_len + sizeof(s) + nframes * sizeof(uint64_t);
    uint8_t *p = calloc(1, len);
    uint64_t pos;

    memcpy(p, fixed, fixed_len);
    memcpy(p + fixed_len, &s, sizeof(s));
    if (nframes)
        memcpy(p + fixed_len + sizeof(s), frames, nframes * sizeof(uint64_t));
    pos = db_append(b, type, p, len);
    free(p);
    return pos;
}

uint64_t db_stall(struct dump_builder *b, uint32_t tid, uint16_t call, uint64_t iter_seq,
                  uint64_t start_ns, uint64_t busy_ns, const uint64_t *frames, uint16_t nframes)
{
    struct st_rec_stall r;
    const size_t skip = sizeof(struct st_record);

    memset(&r, 0, sizeof(r));
    r.tid = tid;
    r.call = call;
    r.iter_seq = iter_seq;
    r.start_ns = start_ns;
    r.busy_ns = busy_ns;
    r.call_ns = call ? busy_ns : 0;
    r.calls_ns = r.call_ns;
    return append_with_stack(b, ST_REC_STALL, (uint8_t *)&r + skip,
                             offsetof(struct st_rec_stall, stack) - skip, frames, nframes);
}

uint64_t db_stall_call(struct dump_builder *b, uint32_t tid, uint16_t call, uint64_t iter_seq,
                       uint16_t count, uint64_t total_ns, uint64_t max_ns, const uint64_t *frames,
                       uint16_t nframes)
{
    struct st_rec_stall_call r;
    const size_t skip = sizeof(struct st_record);

    memset(&r, 0, sizeof(r));
    r.tid = tid;
    r.call = call;
    r.count = count;
    r.iter_seq = iter_seq;
    r.total_ns = total_ns;
    r.max_ns = max_ns;
    return append_with_stack(b, ST_REC_STALL_CALL, (uint8_t *)&r + skip,
                             offsetof(struct st_rec_stall_call, stack) - skip, frames, nframes);
}

uint64_t db_stall_cpu(struct dump_builder *b, uint32_t tid, uint64_t iter_seq, uint64_t window_ns,
                      uint64_t cpu_ns, uint64_t runq_ns)
{
    struct st_rec_stall_cpu r;
    const size_t skip = sizeof(struct st_record);

    memset(&r, 0, sizeof(r));
    r.tid = tid;
    r.iter_seq = iter_seq;
    r.window_ns = window_ns;
    r.cpu_ns = cpu_ns;
    r.runq_ns = runq_ns;
    return db_append(b, ST_REC_STALL_CPU, (uint8_t *)&r + skip, sizeof(r) - skip);
}

uint64_t db_jitsym(struct dump_builder *b, uint64_t start, uint32_t size, const char *name)
{
    struct st_rec_jitsym r;
    const size_t skip = sizeof(struct st_record), n = strlen(name);
    uint8_t buf[sizeof(r) + 256];

    memset(&r, 0, sizeof(r));
    r.start = start;
    r.size = size;
    r.name_len = (uint16_t)(n < 256 ? n : 255);
    memcpy(buf, &r, sizeof(r));
    memcpy(buf + sizeof(r), name, r.name_len);
    return db_append(b, ST_REC_JITSYM, buf + skip, sizeof(r) - skip + r.name_len);
}

uint64_t db_sample(struct dump_builder *b, uint32_t tid, uint64_t iter_seq, uint64_t at_ns,
                   const uint64_t *frames, uint16_t nframes)
{
    struct st_rec_sample r;
    const size_t skip = sizeof(struct st_record);

    memset(&r, 0, sizeof(r));
    r.tid = tid;
    r.iter_seq = iter_seq;
    r.at_ns = at_ns;
    return append_with_stack(b, ST_REC_SAMPLE, (uint8_t *)&r + skip,
                             offsetof(struct st_rec_sample, stack) - skip, frames, nframes);
}

uint64_t db_slow_call(struct dump_builder *b, uint32_t tid, uint16_t call, uint64_t start_ns,
                      uint64_t duration_ns, const uint64_t *frames, uint16_t nframes)
{
    struct st_rec_slow_call r;
    const size_t skip = sizeof(struct st_record);

    memset(&r, 0, sizeof(r));
    r.tid = tid;
    r.call = call;
    r.start_ns = start_ns;
    r.duration_ns = duration_ns;
    return append_with_stack(b, ST_REC_SLOW_CALL, (uint8_t *)&r + skip,
                             offsetof(struct st_rec_slow_call, stack) - skip, frames, nframes);
}

uint64_t db_lock_holder(struct dump_builder *b, uint32_t waiter, uint32_t holder_tid, uint32_t readers,
                        uint16_t call, uint16_t kind, uint64_t object, uint64_t wait_start_ns,
                        uint64_t held_ns)
{
    struct st_rec_lock_holder r;
    const size_t skip = sizeof(struct st_record);

    memset(&r, 0, sizeof(r));
    r.tid = waiter;
    r.holder_tid = holder_tid;
    r.readers = readers;
    r.call = call;
    r.kind = kind;
    r.object = object;
    r.wait_start_ns = wait_start_ns;
    r.held_ns = held_ns;
    return db_append(b, ST_REC_LOCK_HOLDER, (uint8_t *)&r + skip, sizeof(r) - skip);
}

uint64_t db_lock_wait(struct dump_builder *b, uint32_t tid, uint16_t call, uint16_t kind, uint64_t object,
                      uint64_t start_ns, uint64_t duration_ns, uint32_t retries, const uint64_t *frames,
                      uint16_t nframes)
{
    struct st_rec_lock_wait r;
    const size_t skip = sizeof(struct st_record);

    memset(&r, 0, sizeof(r));
    r.tid = tid;
    r.call = call;
    r.kind = kind;
    r.object = object;
    r.start_ns = start_ns;
    r.duration_ns = duration_ns;
    r.retries = retries;
    return append_with_stack(b, ST_REC_LOCK_WAIT, (uint8_t *)&r + skip,
                             offsetof(struct st_rec_lock_wait, stack) - skip, frames, nframes);
}

uint64_t db_saturation(struct dump_builder *b, uint64_t object, uint64_t start_ns, uint64_t duration_ns,
                       uint32_t members)
{
    struct st_rec_saturation r;
    const size_t skip = sizeof(struct st_record);

    memset(&r, 0, sizeof(r));
    r.object = object;
    r.start_ns = start_ns;
    r.duration_ns = duration_ns;
    r.members = members;
    return db_append(b, ST_REC_SATURATION, (uint8_t *)&r + skip, sizeof(r) - skip);
}

void db_complete(struct dump_builder *b, uint64_t last_update_ns)
{
    struct st_file_header *h = db_header(b);

    h->last_update_ns = last_update_ns;
    h->end_reason = ST_END_EXIT;
    h->flags |= ST_FLAG_COMPLETE;
}

int db_write(const struct dump_builder *b, const char *path)
{
    FILE *f = fopen(path, "wb");
    int rc;

    if (!f)
        return -1;
    rc = fwrite(b->buf, 1, b->len, f) == b->len ? 0 : -1;
    if (fclose(f) != 0)
        rc = -1;
    return rc;
}

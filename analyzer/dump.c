/* dump.c - opens a dump and validates every byte of it before use, then
 * decodes the process facts, module map, thread and object tables and ring records. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "grow.h"
#include "dump.h"

/* Big enough for every known record with full native and Python stacks,
 * and for a code record as the recorder writes it; longer records of known
 * types carry nothing we use beyond that. */
#define REC_COPY_MAX 4096u

static const char *call_names[] = {
#define ST_CALL_NAME(id, name) name,
    ST_CALLS(ST_CALL_NAME)
#undef ST_CALL_NAME
};

const char *dump_call_name(unsigned call)
{
    if (call == ST_CALL_NONE || call >= ST_CALL_COUNT)
        return NULL;
    return call_names[call];
}

static void set_err(char **err, const char *name, const char *fmt, ...)
{
    char *msg = NULL, *line = NULL;
    va_list ap;

    if (!err)
        return;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    if (asprintf(&line, "%s: %s", name, msg ? msg : "out of memory") < 0)
        line = NULL;
    free(msg);
    *err = line;
}

/* Is [off, off + count * size) inside a file of len bytes? No overflow. */
static bool section_inside(uint64_t off, uint64_t count, uint64_t size, size_t len)
{
    uint64_t total;

    if (__builtin_mul_overflow(count, size, &total))
        return false;
    if (off > len)
        return false;
    return total <= len - off;
}

/* The checks that need only the header; fills *h. 0 or -1 with *err set. */
static int check_header(const uint8_t *buf, size_t avail, uint64_t file_len, const char *name,
                        struct st_file_header *h, char **err)
{
    uint32_t version, endian;
    size_t len = avail;

    if (len < sizeof(h->magic) || memcmp(buf, ST_MAGIC, sizeof(h->magic)) != 0) {
        if (len < sizeof(h->magic) && len > 0 && memcmp(buf, ST_MAGIC, len) == 0)
            set_err(err, name, "truncated (file is %zu bytes, shorter than a header)", len);
        else if (len == 0)
            set_err(err, name, "not a stalltrace dump (empty file)");
        else
            set_err(err, name, "not a stalltrace dump (bad magic)");
        return -1;
    }
    if (len < offsetof(struct st_file_header, header_size)) {
        set_err(err, name, "truncated (file is %zu bytes, shorter than a header)", len);
        return -1;
    }
    memcpy(&version, buf + offsetof(struct st_file_header, version), sizeof(version));
    memcpy(&endian, buf + offsetof(struct st_file_header, endian), sizeof(endian));
    if (endian == __builtin_bswap32(ST_ENDIAN_MARK)) {
        set_err(err, name, "written on a machine of the other byte order");
        return -1;
    }
    if (version != ST_FORMAT_VERSION) {
        set_err(err, name, "format version %u, this stalltrace reads version %u",
                version, ST_FORMAT_VERSION);
        return -1;
    }
    if (endian != ST_ENDIAN_MARK) {
        set_err(err, name, "corrupted (bad byte-order mark 0x%08x)", endian);
        return -1;
    }
    if (len < sizeof(*h)) {
        set_err(err, name, "truncated (file is %zu bytes, shorter than its %zu-byte header)",
                len, sizeof(*h));
        return -1;
    }
    /* From here on the sizes are the file's, which may be more than the
     * bytes at hand when only the header was read. */
    len = file_len > SIZE_MAX ? SIZE_MAX : (size_t)file_len;
    memcpy(h, buf, sizeof(*h));
    if (h->header_size != sizeof(*h)) {
        set_err(err, name, "corrupted (header size %u, expected %zu)", h->header_size, sizeof(*h));
        return -1;
    }
    if (h->file_size > len) {
        set_err(err, name, "truncated (file is %zu bytes, header says %llu)",
                len, (unsigned long long)h->file_size);
        return -1;
    }
    if (h->file_size < len) {
        set_err(err, name, "corrupted (file is %zu bytes, header says %llu)",
                len, (unsigned long long)h->file_size);
        return -1;
    }
    if (h->process_size < sizeof(struct st_process) ||
        !section_inside(h->process_offset, 1, h->process_size, len)) {
        set_err(err, name, "corrupted (process section outside the file)");
        return -1;
    }
    if (h->module_size < sizeof(struct st_module)) {
        set_err(err, name, "corrupted (module slot size %u, expected %zu)",
                h->module_size, sizeof(struct st_module));
        return -1;
    }
    if (!section_inside(h->modules_offset, h->module_capacity, h->module_size, len)) {
        set_err(err, name, "corrupted (modules section outside the file)");
        return -1;
    }
    if (h->thread_size < sizeof(struct st_thread)) {
        set_err(err, name, "corrupted (thread slot size %u, expected %zu)",
                h->thread_size, sizeof(struct st_thread));
        return -1;
    }
    if (!section_inside(h->threads_offset, h->thread_capacity, h->thread_size, len)) {
        set_err(err, name, "corrupted (threads section outside the file)");
        return -1;
    }
    if (h->ring_size < ST_RECORD_ALIGN || (h->ring_size & (h->ring_size - 1)) != 0) {
        set_err(err, name, "corrupted (ring size %llu is not a power of two of at least %u)",
                (unsigned long long)h->ring_size, ST_RECORD_ALIGN);
        return -1;
    }
    if (!section_inside(h->ring_offset, 1, h->ring_size, len)) {
        set_err(err, name, "corrupted (ring section outside the file)");
        return -1;
    }
    /* The object table is optional: a capacity of 0 means none. */
    if (h->object_capacity > 0 && h->object_size < sizeof(struct st_object)) {
        set_err(err, name, "corrupted (object slot size %u, expected %zu)",
                h->object_size, sizeof(struct st_object));
        return -1;
    }
    if (h->object_capacity > 0 &&
        !section_inside(h->objects_offset, h->object_capacity, h->object_size, len)) {
        set_err(err, name, "corrupted (objects section outside the file)");
        return -1;
    }
    /* The task queue table is optional too (dumps from before it: 0). */
    if (h->queue_capacity > 0 &&
        (h->queue_size < sizeof(struct st_queue) ||
         !section_inside(h->queues_offset, h->queue_capacity, h->queue_size, len))) {
        set_err(err, name, "corrupted (task queue section outside the file or slot size %u)",
                h->queue_size);
        return -1;
    }
    if (h->module_count > h->module_capacity) {
        set_err(err, name, "corrupted (module count %u exceeds capacity %u)",
                h->module_count, h->module_capacity);
        return -1;
    }
    if (h->thread_count > h->thread_capacity) {
        set_err(err, name, "corrupted (thread count %u exceeds capacity %u)",
                h->thread_count, h->thread_capacity);
        return -1;
    }
    return 0;
}

/* Copy a fixed-size char array into dst[n + 1]: an unterminated string is
 * kept as truncated rather than rejected. */
static void copy_string(char *dst, const char *src, size_t n)
{
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static int load_process(struct dump *d, const uint8_t *buf)
{
    char args[ST_ARGV_MAX + 1];
    size_t len, i, n = 0;

    memcpy(&d->proc, buf + d->hdr.process_offset, sizeof(d->proc));
    d->proc.exe[ST_EXE_MAX - 1] = '\0';

    /* Strings are counted within argv_len, and at most argc of them. */
    len = d->proc.argv_len < ST_ARGV_MAX ? d->proc.argv_len : ST_ARGV_MAX;
    memcpy(args, d->proc.argv, len);
    args[len] = '\0';
    for (i = 0; i < len && n < d->proc.argc; n++)
        i += strlen(args + i) + 1;

    d->argv = calloc(n + 1, sizeof(*d->argv));
    if (!d->argv)
        return -1;
    for (i = 0; (int)d->argc < (int)n; d->argc++) {
        d->argv[d->argc] = strdup(args + i);
        if (!d->argv[d->argc])
            return -1;
        i += strlen(args + i) + 1;
    }
    return 0;
}

static int load_modules(struct dump *d, const uint8_t *buf)
{
    uint32_t i, n = d->hdr.module_count;

    d->modules = calloc(n ? n : 1, sizeof(*d->modules));
    if (!d->modules)
        return -1;
    for (i = 0; i < n; i++) {
        struct st_module *m = &d->modules[d->nmodules];

        memcpy(m, buf + d->hdr.modules_offset + (uint64_t)i * d->hdr.module_size, sizeof(*m));
        /* A slot not yet committed, or one that makes no sense, is left out. */
        if (m->valid != 1 || m->start >= m->end)
            continue;
        m->path[ST_PATH_MAX - 1] = '\0';
        if (m->build_id_len > ST_BUILD_ID_MAX)
            m->build_id_len = 0;
        d->nmodules++;
    }
    return 0;
}

static int load_threads(struct dump *d, const uint8_t *buf)
{
    uint32_t i, n = d->hdr.thread_count;

    d->threads = calloc(n ? n : 1, sizeof(*d->threads));
    d->thread_slots = calloc(n ? n : 1, sizeof(*d->thread_slots));
    if (!d->threads || !d->thread_slots)
        return -1;
    for (i = 0; i < n; i++) {
        struct st_thread *t = &d->threads[d->nthreads];

        memcpy(t, buf + d->hdr.threads_offset + (uint64_t)i * d->hdr.thread_size, sizeof(*t));
        if (t->tid == 0)
            continue;
        t->name[ST_NAME_MAX - 1] = '\0';
        /* Objects name threads by slot, free slots included: keep it. */
        d->thread_slots[d->nthreads++] = i;
    }
    return 0;
}

static int load_objects(struct dump *d, const uint8_t *buf)
{
    uint32_t i, n = d->hdr.object_capacity;
    size_t cap = d->hdr.object_count < n ? d->hdr.object_count : n;
    struct st_object o;

    /* object_count is a hint for the allocation; the slots are the truth. */
    d->objects = calloc(cap ? cap : 1, sizeof(*d->objects));
    if (!d->objects)
        return -1;
    for (i = 0; i < n; i++) {
        memcpy(&o, buf + d->hdr.objects_offset + (uint64_t)i * d->hdr.object_size, sizeof(o));
        if (o.addr == 0)
            continue;
        if (GROW(d->objects, cap, (size_t)d->nobjects + 1, 16) < 0)
            return -1;
        d->objects[d->nobjects++] = o;
    }
    return 0;
}

static int load_queues(struct dump *d, const uint8_t *buf)
{
    uint32_t i, n = d->hdr.queue_capacity;

    d->queues = calloc(n ? n : 1, sizeof(*d->queues));
    d->queue_slots = calloc(n ? n : 1, sizeof(*d->queue_slots));
    if (!d->queues || !d->queue_slots)
        return -1;
    for (i = 0; i < n; i++) {
        struct st_queue *q = &d->queues[d->nqueues];

        memcpy(q, buf + d->hdr.queues_offset + (uint64_t)i * d->hdr.queue_size, sizeof(*q));
        if (q->name_hash == 0 || q->valid != 1)
            continue;
        q->name[ST_QUEUE_NAME_MAX - 1] = '\0';
        d->queue_slots[d->nqueues++] = i;
    }
    return 0;
}

/* Copy n bytes at absolute ring position pos, following the wrap. */
/* The part of a record that wraps is read from wrap: for a live dump, the
 * ring's first bytes copied again after the whole ring, since the first copy
 * of them was taken before the record's header (and its commit) was. */
static void ring_copy(const uint8_t *ring, const uint8_t *wrap, uint64_t ring_size, uint64_t pos,
                      void *dst, size_t n)
{
    uint64_t off = pos & (ring_size - 1);
    size_t first = n <= ring_size - off ? n : (size_t)(ring_size - off);

    memcpy(dst, ring + off, first);
    if (first < n)
        memcpy((uint8_t *)dst + first, wrap, n - first);
}

/* Growable outputs of the ring walk. */
struct walk {
    struct dump_event *events;
    size_t *frame_at;              /* arena index of each event's frames */
    size_t nevents, cap, frame_at_cap, py_at_cap;
    uint64_t *arena;
    size_t narena, arena_cap;
    size_t *py_at;                 /* pyarena index of each event's Python frames */
    struct dump_pyframe *pyarena;
    size_t npy, py_cap;
};

/* Copy a stack's Python frames (raw st_pyframe, after its native frames). */
static int walk_push_python(struct walk *w, const struct dump_event *ev, const uint8_t *raw)
{
    uint16_t i;

    if (GROW(w->pyarena, w->py_cap, w->npy + ev->stack.npython, 1024) < 0)
        return -1;
    for (i = 0; i < ev->stack.npython; i++) {
        struct st_pyframe f;
        memcpy(&f, raw + (size_t)i * sizeof(f), sizeof(f));
        w->pyarena[w->npy + i] = (struct dump_pyframe){f.code, f.instr, f.flags, NULL};
    }
    w->py_at[w->nevents] = w->npy;
    w->npy += ev->stack.npython;
    return 0;
}

static int walk_push(struct walk *w, const struct dump_event *ev, const uint64_t *frames)
{
    /* Three arrays indexed alike: each keeps its own room, all the same. */
    if (GROW(w->events, w->cap, w->nevents + 1, 256) < 0 ||
        GROW(w->frame_at, w->frame_at_cap, w->nevents + 1, 256) < 0 ||
        GROW(w->py_at, w->py_at_cap, w->nevents + 1, 256) < 0)
        return -1;
    if (GROW(w->arena, w->arena_cap, w->narena + ev->stack.nframes, 4096) < 0)
        return -1;
    if (ev->stack.nframes)
        memcpy(w->arena + w->narena, frames, ev->stack.nframes * sizeof(uint64_t));
    if (walk_push_python(w, ev, frames ? (const uint8_t *)(frames + ev->stack.nframes) : NULL) < 0)
        return -1;
    w->frame_at[w->nevents] = w->narena;
    w->narena += ev->stack.nframes;
    w->events[w->nevents++] = *ev;
    return 0;
}

/* Decode the stack at byte offset at of a record of size bytes (copied in
 * rec). Returns false if it does not fit. */
static bool decode_stack(const uint8_t *rec, size_t size, size_t at, struct dump_event *ev,
                         const uint64_t **frames)
{
    struct st_stack s;

    if (at + sizeof(s) > size)
        return false;
    memcpy(&s, rec + at, sizeof(s));
    size_t end = at + sizeof(s) + (size_t)s.nframes * 8u + (size_t)s.npython * sizeof(struct st_pyframe);
    if (s.nframes > ST_MAX_FRAMES || s.npython > ST_MAX_PYFRAMES || end > size)
        return false;
    ev->stack.jit_map_bytes = DUMP_JIT_MAP_UNNOTED;
    if (s.flags & ST_STACK_JIT_MARK) {
        if (end + sizeof(uint64_t) > size)
            return false;
        memcpy(&ev->stack.jit_map_bytes, rec + end, sizeof(uint64_t));
    }
    ev->stack.nframes = s.nframes;
    ev->stack.unwinder = s.unwinder;
    ev->stack.truncated = s.truncated;
    ev->stack.npython = s.npython;
    ev->stack.python = s.python;
    *frames = (const uint64_t *)(rec + at + sizeof(s));
    return true;
}

/* 1: kept, 0: malformed, -1: out of memory. */
static int jitsym_add(struct dump *d, const uint8_t *rec, size_t size)
{
    struct st_rec_jitsym r;
    if (size < sizeof(r))
        return 0;
    memcpy(&r, rec, sizeof(r));
    if (r.size == 0 || r.name_len == 0 || sizeof(r) + (size_t)r.name_len > size)
        return 0;
    uint64_t map_end = 0;
    if (r.flags & ST_JITSYM_MAP_END) {
        size_t at = (sizeof(r) + (size_t)r.name_len + 7) & ~(size_t)7;
        if (at + sizeof(map_end) > size)
            return 0;
        memcpy(&map_end, rec + at, sizeof(map_end));
    }
    if (GROW(d->jitsyms, d->jitsyms_cap, d->njitsyms + 1, 16) < 0)
        return -1;
    char *name = strndup((const char *)rec + sizeof(r), r.name_len);
    if (!name)
        return -1;
    d->jitsyms[d->njitsyms++] = (struct dump_jitsym){r.start, r.size, map_end, name};
    return 1;
}

/* 1: kept, 0: malformed, -1: out of memory. */
static int code_copy_add(struct dump *d, const uint8_t *rec, size_t size)
{
    struct st_rec_code_copy r;
    if (size < sizeof(r))
        return 0;
    memcpy(&r, rec, sizeof(r));
    if (r.size == 0 || r.start + r.size < r.start || r.copy_of + r.size < r.copy_of)
        return 0;
    if (GROW(d->code_copies, d->code_copies_cap, d->ncode_copies + 1, 4) < 0)
        return -1;
    d->code_copies[d->ncode_copies++] = (struct dump_code_copy){r.start, r.size, r.copy_of};
    return 1;
}

/* Decode one committed record. 1: an event to keep, 0: an unknown type
 * (skipped but seen), -1: malformed. */
static int decode_record(const uint8_t *rec, size_t size, uint16_t type,
                         struct dump_event *ev, const uint64_t **frames)
{
    memset(ev, 0, sizeof(*ev));
    ev->type = type;
    *frames = NULL;
    switch (type) {
    case ST_REC_STALL: {
        struct st_rec_stall r;
        if (size < sizeof(r))
            return -1;
        memcpy(&r, rec, sizeof(r));
        ev->tid = r.tid;
        ev->call = r.call;
        ev->iter_seq = r.iter_seq;
        ev->start_ns = r.start_ns;
        ev->duration_ns = r.busy_ns;
        ev->call_ns = r.call_ns;
        ev->calls_ns = r.calls_ns;
        return decode_stack(rec, size, offsetof(struct st_rec_stall, stack), ev, frames) ? 1 : -1;
    }
    case ST_REC_SAMPLE: {
        struct st_rec_sample r;
        if (size < sizeof(r))
            return -1;
        memcpy(&r, rec, sizeof(r));
        ev->tid = r.tid;
        ev->iter_seq = r.iter_seq;
        ev->at_ns = r.at_ns;
        return decode_stack(rec, size, offsetof(struct st_rec_sample, stack), ev, frames) ? 1 : -1;
    }
    case ST_REC_SLOW_CALL: {
        struct st_rec_slow_call r;
        if (size < sizeof(r))
            return -1;
        memcpy(&r, rec, sizeof(r));
        ev->tid = r.tid;
        ev->call = r.call;
        ev->start_ns = r.start_ns;
        ev->duration_ns = r.duration_ns;
        ev->object = r.object;
        return decode_stack(rec, size, offsetof(struct st_rec_slow_call, stack), ev, frames) ? 1 : -1;
    }
    case ST_REC_LOCK_WAIT: {
        struct st_rec_lock_wait r;
        if (size < sizeof(r))
            return -1;
        memcpy(&r, rec, sizeof(r));
        ev->tid = r.tid;
        ev->call = r.call;
        ev->kind = r.kind;
        ev->object = r.object;
        ev->start_ns = r.start_ns;
        ev->duration_ns = r.duration_ns;
        ev->retries = r.retries;
        return decode_stack(rec, size, offsetof(struct st_rec_lock_wait, stack), ev, frames) ? 1 : -1;
    }
    case ST_REC_SATURATION: {
        struct st_rec_saturation r;
        if (size < sizeof(r))
            return -1;
        memcpy(&r, rec, sizeof(r));
        ev->object = r.object;
        ev->start_ns = r.start_ns;
        ev->duration_ns = r.duration_ns;
        ev->members = r.members;
        ev->retroactive = r.retroactive != 0;
        return 1;
    }
    case ST_REC_TASK_WAIT: {
        struct st_rec_task_wait r;
        if (size < sizeof(r))
            return -1;
        memcpy(&r, rec, sizeof(r));
        if (r.start_ns < r.submit_ns)
            return -1;
        ev->tid = r.start_tid;
        ev->submit_tid = r.submit_tid;
        ev->queue = r.queue;
        ev->task_id = r.task_id;
        ev->start_ns = r.submit_ns;
        ev->duration_ns = r.start_ns - r.submit_ns;
        ev->stack_kind = r.stack_kind;
        ev->stack_at_ns = r.stack_at_ns;
        return decode_stack(rec, size, offsetof(struct st_rec_task_wait, stack), ev, frames) ? 1 : -1;
    }
    case ST_REC_STALL_CALL: {
        struct st_rec_stall_call r;
        if (size < sizeof(r))
            return -1;
        memcpy(&r, rec, sizeof(r));
        if (r.max_ns > r.total_ns)
            return -1;
        ev->tid = r.tid;
        ev->call = r.call;
        ev->count = r.count;
        ev->iter_seq = r.iter_seq;
        ev->duration_ns = r.total_ns;
        ev->call_ns = r.max_ns;
        return decode_stack(rec, size, offsetof(struct st_rec_stall_call, stack), ev, frames) ? 1 : -1;
    }
    case ST_REC_STALL_CPU: {
        struct st_rec_stall_cpu r;
        if (size < sizeof(r))
            return -1;
        memcpy(&r, rec, sizeof(r));
        ev->tid = r.tid;
        ev->iter_seq = r.iter_seq;
        ev->duration_ns = r.window_ns;
        ev->cpu_ns = r.cpu_ns;
        ev->runq_ns = r.runq_ns;
        return 1;
    }
    case ST_REC_LOCK_HOLDER: {
        struct st_rec_lock_holder r;
        if (size < sizeof(r))
            return -1;
        memcpy(&r, rec, sizeof(r));
        ev->tid = r.tid;
        ev->holder_tid = r.holder_tid;
        ev->readers = r.holder_tid ? 0 : r.readers;
        ev->call = r.call;
        ev->kind = r.kind;
        ev->object = r.object;
        ev->start_ns = r.wait_start_ns;
        ev->duration_ns = r.held_ns;
        return 1;
    }
    case ST_REC_HOLDER_SAMPLE: {
        struct st_rec_holder_sample r;
        if (size < sizeof(r))
            return -1;
        memcpy(&r, rec, sizeof(r));
        ev->tid = r.waiter_tid;
        ev->holder_tid = r.holder_tid;
        ev->object = r.object;
        ev->start_ns = r.wait_start_ns;
        ev->at_ns = r.at_ns;
        return decode_stack(rec, size, offsetof(struct st_rec_holder_sample, stack), ev, frames) ? 1 : -1;
    }
    case ST_REC_POOL_FEED: {
        struct st_rec_pool_feed r;
        if (size < sizeof(r))
            return -1;
        memcpy(&r, rec, sizeof(r));
        ev->tid = r.tid;
        ev->call = r.call;
        ev->feed_flags = r.flags;
        ev->object = r.object;
        ev->at_ns = r.at_ns;
        return decode_stack(rec, size, offsetof(struct st_rec_pool_feed, stack), ev, frames) ? 1 : -1;
    }
    case ST_REC_POOL_DRAIN: {
        struct st_rec_pool_drain r;
        if (size < sizeof(r))
            return -1;
        memcpy(&r, rec, sizeof(r));
        ev->object = r.object;
        ev->at_ns = r.at_ns;
        ev->count = r.feeds;
        return 1;
    }
    case ST_REC_THREAD_NAME: {
        struct st_rec_thread_name r;
        if (size < sizeof(r))
            return -1;
        memcpy(&r, rec, sizeof(r));
        ev->tid = r.tid;
        ev->at_ns = r.at_ns;
        copy_string(ev->name, r.name, ST_NAME_MAX);
        return 1;
    }
    default:
        return 0;
    }
}

/* Walk the live window of the ring as format.h describes. head_after is
 * ring_head as read again after the ring was copied (0 if not): writers
 * only write below the head they reserved, so a record at or past
 * head_after - ring_size was not overwritten while it was copied. wrap:
 * see ring_copy (NULL: the ring itself). */
static int walk_ring(struct dump *d, const uint8_t *ring, const uint8_t *wrap, uint64_t head_after,
                     struct walk *w)
{
    uint64_t size = d->hdr.ring_size, head = d->hdr.ring_head;
    uint64_t lo = head > size ? head - size : 0;
    uint64_t pos;
    uint64_t rec_words[REC_COPY_MAX / 8];
    uint8_t *rec = (uint8_t *)rec_words;

    if (head_after > size && head_after - size > lo)
        lo = head_after - size;
    d->overwritten_bytes = lo;
    pos = (lo + ST_RECORD_ALIGN - 1) & ~(uint64_t)(ST_RECORD_ALIGN - 1);
    if (pos < lo)                  /* wrapped past 2^64: nothing to read */
        return 0;

    while (pos < head && head - pos >= sizeof(struct st_record)) {
        uint64_t off = pos & (size - 1);
        struct st_record r;

        /* off is aligned and size a power of two >= 16: no wrap here. */
        memcpy(&r, ring + off, sizeof(r));
        if (r.magic != ST_RECORD_MAGIC || r.pos != pos || r.size < sizeof(r) ||
            r.size % ST_RECORD_ALIGN != 0 || r.size > size || r.size > head - pos) {
            pos += ST_RECORD_ALIGN;  /* torn or stale: resynchronise */
            continue;
        }
        if (st_ring_record_suspect(&d->hdr, pos, r.size)) {
            pos += r.size;           /* a lapped writer's bytes may be in it: dropped */
            continue;
        }

        size_t n = r.size < REC_COPY_MAX ? r.size : REC_COPY_MAX;
        struct dump_event ev;
        const uint64_t *frames;
        ring_copy(ring, wrap ? wrap : ring, size, pos, rec, n);
        int kind = decode_record(rec, n, r.type, &ev, &frames);
        if (r.type == ST_REC_JITSYM) {
            int got = jitsym_add(d, rec, n);
            if (got < 0)
                return -1;
            kind = got ? 0 : -1;
        }
        if (r.type == ST_REC_CODE_COPY) {
            int got = code_copy_add(d, rec, n);
            if (got < 0)
                return -1;
            kind = got ? 0 : -1;
        }
        if (r.type == ST_REC_PYCODE) {
            /* Code objects are kept aside: stacks name them by address. */
            int got = py_codes_add(&d->pycodes, pos, rec, n);
            if (got < 0)
                return -1;
            kind = got ? 0 : -1;
        }
        if (kind >= 0)
            d->accepted++;
        if (kind == 1) {
            ev.pos = pos;
            if (walk_push(w, &ev, frames) < 0)
                return -1;
        }
        pos += r.size;
    }
    return 0;
}

static struct dump *parse(const char *name, const uint8_t *buf, size_t len,
                          uint64_t head_after, const uint8_t *wrap, char **err)
{
    struct dump *d = calloc(1, sizeof(*d));
    struct walk w = {0};
    size_t i;

    if (err)
        *err = NULL;
    if (!d || !(d->path = strdup(name))) {
        free(d);
        set_err(err, name, "out of memory");
        return NULL;
    }
    if (check_header(buf, len, len, name, &d->hdr, err) < 0) {
        dump_free(d);
        return NULL;
    }
    copy_string(d->recorder_version, d->hdr.recorder_version, sizeof(d->hdr.recorder_version));
    copy_string(d->unwinder, d->hdr.unwinder, sizeof(d->hdr.unwinder));
    d->live = !(d->hdr.flags & ST_FLAG_COMPLETE);

    if (load_process(d, buf) < 0 || load_modules(d, buf) < 0 || load_threads(d, buf) < 0 ||
        load_objects(d, buf) < 0 || load_queues(d, buf) < 0)
        goto oom;

    const uint8_t *ring = buf + d->hdr.ring_offset;
    if (walk_ring(d, ring, wrap, head_after, &w) < 0)
        goto oom;
    py_codes_finish(&d->pycodes);
    for (i = 0; i < w.nevents; i++) {
        struct dump_stack *s = &w.events[i].stack;
        struct dump_pyframe *py = s->npython ? w.pyarena + w.py_at[i] : NULL;
        s->frames = w.arena ? w.arena + w.frame_at[i] : NULL;
        s->pyframes = py;
        for (size_t j = 0; j < s->npython; j++)  /* the description in force then */
            py[j].info = py_codes_find(&d->pycodes, py[j].code, w.events[i].pos);
    }
    d->events = w.events;
    d->nevents = w.nevents;
    d->arena = w.arena;
    d->pyarena = w.pyarena;
    free(w.frame_at);
    free(w.py_at);
    d->dropped = d->hdr.ring_records > d->accepted ? d->hdr.ring_records - d->accepted : 0;
    return d;

oom:
    free(w.events);
    free(w.frame_at);
    free(w.arena);
    free(w.py_at);
    free(w.pyarena);
    dump_free(d);
    set_err(err, name, "out of memory");
    return NULL;
}

struct dump *dump_open_mem(const void *buf, size_t len, const char *name, char **err)
{
    return parse(name, buf, len, 0, NULL, err);
}

/* Read up to n bytes at off; returns the count read, or -1. */
static ssize_t read_at(int fd, void *dst, size_t n, off_t off)
{
    size_t got = 0;

    while (got < n) {
        ssize_t r = pread(fd, (uint8_t *)dst + got, n - got, off + (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* The most a reader copies from one dump: STALLTRACE_READ_MAX_MB, else room
 * for the recorder's largest ring (4096 MB) and its tables. */
uint64_t dump_read_limit(void)
{
    const char *v = getenv("STALLTRACE_READ_MAX_MB");
    char *end = NULL;
    unsigned long long mb;

    if (v && *v) {
        errno = 0;
        mb = strtoull(v, &end, 10);
        if (errno == 0 && end && *end == '\0' && mb >= 1 && mb <= ((uint64_t)1 << 24))
            return (uint64_t)mb << 20;
    }
    return (uint64_t)DUMP_READ_MAX_MB_DEFAULT << 20;
}

/* Open PATH for reading only if it is a regular file: O_NONBLOCK so a FIFO
 * or a device cannot block open(), O_NOFOLLOW so a planted link is not
 * followed. Returns the fd with *st filled, or -1 with *err set. */
static int open_regular(const char *path, struct stat *st, char **err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY);

    if (fd < 0) {
        int e = errno;             /* kept for callers that tell EMFILE apart */
        if (e == ELOOP)
            set_err(err, path, "not a regular file (a symbolic link; give its target)");
        else
            set_err(err, path, "%s", strerror(e));
        errno = e;
        return -1;
    }
    if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
        set_err(err, path, "not a regular file");
        close(fd);
        return -1;
    }
    return fd;
}

struct dump *dump_open_path(const char *path, char **err)
{
    struct stat st;
    struct st_file_header h;
    uint8_t raw[sizeof(h)];
    uint8_t *buf = NULL;
    uint64_t wrap_words[REC_COPY_MAX / 8];
    uint8_t *wrap = (uint8_t *)wrap_words;
    uint64_t head_after = 0, len, limit = dump_read_limit();
    struct dump *d = NULL;
    ssize_t got;
    int fd;

    if (err)
        *err = NULL;
    fd = open_regular(path, &st, err);
    if (fd < 0)
        return NULL;

    /* The header first: nothing is allocated for a file that is not a
     * dump, or for more than its header says it holds. */
    got = read_at(fd, raw, sizeof(raw), 0);
    if (got < 0) {
        set_err(err, path, "%s", strerror(errno));
        goto out;
    }
    len = (uint64_t)st.st_size;
    /* A recorder that shrank its dump in place says so in file_size before
     * it truncates the file: the bytes past it, if it died in between, are
     * what it gave back. */
    if ((size_t)got == sizeof(h) && memcmp(raw, ST_MAGIC, 8) == 0) {
        uint64_t said;
        memcpy(&said, raw + offsetof(struct st_file_header, file_size), sizeof(said));
        if (said >= sizeof(h) && said < len)
            len = said;
    }
    if (check_header(raw, (size_t)got, len, path, &h, err) < 0)
        goto out;
    if (len > limit) {
        set_err(err, path, "dump of %llu MB, more than the %llu MB readers copy "
                "(STALLTRACE_READ_MAX_MB raises it)",
                (unsigned long long)(len >> 20), (unsigned long long)(limit >> 20));
        goto out;
    }
    buf = malloc(len ? (size_t)len : 1);
    if (!buf) {
        set_err(err, path, "out of memory reading %llu bytes", (unsigned long long)len);
        goto out;
    }
    /* read(), not mmap: a file shrinking under us cannot raise SIGBUS. One
     * copy of a live dump, then the head again: records the writer may have
     * overwritten while we copied are left out by the walk. */
    got = read_at(fd, buf, (size_t)len, 0);
    if (got < 0) {
        set_err(err, path, "%s", strerror(errno));
        goto out;
    }
    if (!(h.flags & ST_FLAG_COMPLETE)) {
        size_t wrap_len = h.ring_size < REC_COPY_MAX ? (size_t)h.ring_size : REC_COPY_MAX;
        if (read_at(fd, wrap, wrap_len, (off_t)h.ring_offset) != (ssize_t)wrap_len ||
            read_at(fd, &head_after, sizeof(head_after),
                    offsetof(struct st_file_header, ring_head)) != sizeof(head_after)) {
            /* Shrunk under us: the copy is cut short and fails as such. */
            head_after = 0;
            memcpy(wrap, buf + h.ring_offset, wrap_len);
        }
        /* And the lapped writers' marks again: one left while we copied
         * covers what its bytes damaged in our copy. */
        enum { AT = offsetof(struct st_file_header, ring_lapped),
               MARKS = offsetof(struct st_file_header, reserved) - AT };
        uint8_t fresh[MARKS];
        if ((size_t)got >= sizeof(h) && read_at(fd, fresh, MARKS, AT) == MARKS)
            memcpy(buf + AT, fresh, MARKS);
    }
    d = parse(path, buf, (size_t)got, head_after, h.flags & ST_FLAG_COMPLETE ? NULL : wrap, err);
    if (d)
        d->owner = (unsigned)st.st_uid;
out:
    free(buf);
    close(fd);
    return d;
}

int dump_peek_start(const char *path, uint64_t *start_real_ns, int32_t *pid)
{
    struct st_file_header h;
    struct stat st;
    uint8_t raw[sizeof(h)];
    int fd = open_regular(path, &st, NULL);
    ssize_t got;

    if (fd < 0)
        return -1;
    got = read_at(fd, raw, sizeof(raw), 0);
    if (got != (ssize_t)sizeof(raw) || memcmp(raw, ST_MAGIC, 8) != 0) {
        close(fd);
        return -1;
    }
    memcpy(&h, raw, sizeof(h));
    if (h.version != ST_FORMAT_VERSION || h.endian != ST_ENDIAN_MARK) {
        close(fd);
        return -1;
    }
    *start_real_ns = h.start_real_ns;
    *pid = 0;
    if (read_at(fd, pid, sizeof(*pid), (off_t)h.process_offset) != sizeof(*pid))
        *pid = 0;
    close(fd);
    return 0;
}

void dump_free(struct dump *d)
{
    int i;

    if (!d)
        return;
    if (d->argv)
        for (i = 0; i < d->argc; i++)
            free(d->argv[i]);
    free(d->argv);
    free(d->modules);
    free(d->threads);
    free(d->thread_slots);
    free(d->objects);
    free(d->queues);
    free(d->queue_slots);
    free(d->events);
    free(d->arena);
    free(d->pyarena);
    py_codes_free(&d->pycodes);
    for (size_t i = 0; i < d->njitsyms; i++)
        free(d->jitsyms[i].name);
    free(d->jitsyms);
    free(d->code_copies);
    free(d->path);
    free(d);
}

/* test_dump_abuse.c - the analyzer under abuse: real recorded dumps cut, zeroed
 * and flipped, hostile sizes and offsets, hostile code and JIT records, a live writer. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dump.h"
#include "dump_builder.h"
#include "model.h"
#include "report.h"

/* FUZZ_CORPUS, PRELOAD_SO and POOL_TARGET come from tests/unit/meson.build. */

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#else
#define UNDER_ASAN 0
#endif

/* Without ASan (which reserves terabytes of address space), cap the address
 * space: an allocation sized by a hostile count then fails, and the test
 * sees "out of memory" instead of the machine swapping. */
static void cap_memory(void)
{
    struct rlimit r = {.rlim_cur = (rlim_t)4 << 30, .rlim_max = (rlim_t)4 << 30};
    if (!UNDER_ASAN)
        setrlimit(RLIMIT_AS, &r);
}

static uint8_t *load_from(const char *dir, const char *name, size_t *len)
{
    char path[4096];
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0, "cannot open %s", path);
    cr_assert_eq(fstat(fd, &st), 0);
    uint8_t *buf = malloc((size_t)st.st_size);
    cr_assert_eq(read(fd, buf, (size_t)st.st_size), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return buf;
}

static uint8_t *load(const char *name, size_t *len)
{
    return load_from(FUZZ_CORPUS, name, len);
}

static struct st_file_header *hdr(uint8_t *buf)
{
    return (struct st_file_header *)buf;
}

/* Open bytes the way every command does; if accepted, build the model and
 * write every report format. 1: accepted, 0: refused with one clear line. */
static int exercise(const uint8_t *buf, size_t len)
{
    char *err = NULL;
    struct dump *d = dump_open_mem(buf, len, "abuse.dump", &err);
    if (!d) {
        cr_assert_not_null(err);
        cr_assert(strchr(err, '\n') == NULL, "two lines: %s", err);
        cr_assert(strstr(err, "out of memory") == NULL, "a size drove an allocation: %s", err);
        free(err);
        return 0;
    }
    struct model_options opt = {.threshold_ms = -1, .perf_map_dir = "/nonexistent"};
    struct m_process *p = model_build(d, &opt);
    cr_assert_not_null(p, "model_build ran out of memory");
    FILE *sink = fopen("/dev/null", "w");
    cr_assert_eq(report_json(sink, &p, 1, NULL), 0);
    cr_assert_eq(report_text(sink, &p, 1, NULL), 0);
    cr_assert_eq(report_folded(sink, &p, 1, NULL), 0);
    cr_assert_eq(report_chrome(sink, &p, 1, NULL), 0);
    cr_assert_eq(report_openmetrics(sink, &p, 1, NULL), 0);
    cr_assert_eq(report_html(sink, &p, 1, NULL), 0);
    fclose(sink);
    model_free(p);
    dump_free(d);
    return 1;
}

/* Real dumps from the recorder (shrunk by tests/fuzz/shrink_dump): a C pool,
 * a CPython stall with code records, Node with JIT symbols, a killed process. */
static const char *const real_dumps[] = {"c_pool.dump", "py_sleep.dump", "node_busy.dump",
                                         "py_killed.dump", "py_cpu_wrapped.dump"};
#define NREAL (sizeof(real_dumps) / sizeof(real_dumps[0]))

Test(dump_abuse, real_dumps_are_read_whole)
{
    for (size_t k = 0; k < NREAL; k++) {
        size_t len;
        uint8_t *buf = load(real_dumps[k], &len);
        char *err = NULL;
        struct dump *d = dump_open_mem(buf, len, real_dumps[k], &err);
        cr_assert_not_null(d, "%s", err);
        cr_assert_gt(d->nevents, 0, "%s has no event", real_dumps[k]);
        dump_free(d);
        cr_assert_eq(exercise(buf, len), 1);
        free(buf);
    }
}

/* A file cut anywhere is refused; so is one whose header was made to agree
 * with the cut (a section then lies outside the file). */
Test(dump_abuse, real_dumps_truncated_at_every_offset, .timeout = 120)
{
    cap_memory();
    for (size_t k = 0; k < NREAL; k++) {
        size_t len;
        uint8_t *buf = load(real_dumps[k], &len);
        for (size_t cut = 0; cut < len; cut++) {
            char *err = NULL;
            struct dump *d = dump_open_mem(buf, cut, "cut.dump", &err);
            cr_assert_null(d, "%s accepted cut at %zu", real_dumps[k], cut);
            cr_assert(strstr(err, "truncated") || strstr(err, "not a stalltrace dump"),
                      "%s cut at %zu: %s", real_dumps[k], cut, err);
            free(err);
        }
        uint8_t *copy = malloc(len);
        for (size_t cut = sizeof(struct st_file_header); cut < len; cut += 8) {
            memcpy(copy, buf, cut);
            hdr(copy)->file_size = cut;
            cr_assert_eq(exercise(copy, cut), 0, "%s: header made to agree with a cut at %zu",
                         real_dumps[k], cut);
        }
        free(copy);
        free(buf);
    }
}

/* A crash can leave pages of the mapping never written back: zero the ring
 * from every record boundary on, and a whole page in the middle. */
Test(dump_abuse, real_dumps_with_zeroed_ring_tails, .timeout = 240)
{
    cap_memory();
    for (size_t k = 0; k < NREAL; k++) {
        size_t len;
        uint8_t *buf = load(real_dumps[k], &len);
        uint8_t *copy = malloc(len);
        uint64_t ring = hdr(buf)->ring_offset;
        size_t step = (len - ring) / 24 > ST_RECORD_ALIGN ? (len - ring) / 24 : ST_RECORD_ALIGN;
        for (size_t at = ring; at < len; at += step) {
            memcpy(copy, buf, len);
            memset(copy + at, 0, len - at);
            cr_assert_eq(exercise(copy, len), 1, "%s zeroed from %zu refused", real_dumps[k], at);
            memcpy(copy, buf, len);
            memset(copy + at, 0, len - at < 4096 ? len - at : 4096);
            cr_assert_eq(exercise(copy, len), 1, "%s with a zero page at %zu refused", real_dumps[k], at);
        }
        free(copy);
        free(buf);
    }
}

/* One flipped bit in every byte of the header, and in bytes spread over the
 * tables and the ring of a real dump: a report or one line, never a crash. */
Test(dump_abuse, real_dump_bit_flips, .timeout = 300)
{
    const char *names[] = {"py_sleep.dump", "node_busy.dump"};
    cap_memory();
    for (size_t k = 0; k < 2; k++) {
        size_t len, accepted = 0, tried = 0;
        uint8_t *buf = load(names[k], &len);
        uint8_t *copy = malloc(len);
        unsigned seed = 4242;
        /* An analysis costs ~10 ms: the header byte by byte, 300 others. */
        size_t stride = (len - sizeof(struct st_file_header)) / 300 + 1;
        for (size_t at = 0; at < len; at += at < sizeof(struct st_file_header) ? 1 : stride) {
            size_t where = at < sizeof(struct st_file_header) ? at : at + (size_t)rand_r(&seed) % stride;
            if (where >= len)
                break;
            memcpy(copy, buf, len);
            copy[where] ^= (uint8_t)(1u << (rand_r(&seed) % 8));
            accepted += (size_t)exercise(copy, len);
            tried++;
        }
        cr_assert_gt(accepted, tried / 2, "%s: %zu of %zu flips accepted", names[k], accepted, tried);
        free(copy);
        free(buf);
    }
}

/* Every input that once broke the fuzzer (tests/fuzz/regressions). */
Test(dump_abuse, fuzz_regressions_replay, .timeout = 120)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/../regressions", FUZZ_CORPUS);
    DIR *dp = opendir(dir);
    struct dirent *e;
    size_t n = 0;

    cr_assert_not_null(dp, "cannot open %s", dir);
    cap_memory();
    while ((e = readdir(dp))) {
        size_t len;
        if (e->d_name[0] == '.')
            continue;
        uint8_t *buf = load_from(dir, e->d_name, &len);
        exercise(buf, len);
        free(buf);
        n++;
    }
    closedir(dp);
    cr_assert_gt(n, 0);
}

/* Counts and sizes at their largest: refused as corrupted, or clamped. */
Test(dump_abuse, huge_counts_and_sizes, .timeout = 60)
{
    size_t len;
    uint8_t *buf = load("c_pool.dump", &len);
    uint8_t *copy = malloc(len);
    cap_memory();

#define MUTATE(stmt)                                                        \
    do {                                                                    \
        memcpy(copy, buf, len);                                             \
        struct st_file_header *h = hdr(copy);                               \
        (void)h;                                                            \
        stmt;                                                               \
        exercise(copy, len);                                                \
    } while (0)

    MUTATE(h->module_capacity = UINT32_MAX);
    MUTATE(h->module_count = UINT32_MAX);
    MUTATE((h->module_capacity = UINT32_MAX, h->module_count = UINT32_MAX));
    MUTATE(h->module_size = UINT32_MAX);
    MUTATE(h->thread_capacity = UINT32_MAX);
    MUTATE((h->thread_capacity = UINT32_MAX, h->thread_count = UINT32_MAX));
    MUTATE(h->thread_size = UINT32_MAX);
    MUTATE(h->object_capacity = UINT32_MAX);
    MUTATE(h->object_count = UINT32_MAX);
    MUTATE(h->object_size = UINT32_MAX);
    MUTATE(h->process_size = UINT64_MAX);
    MUTATE(h->ring_size = (uint64_t)1 << 63);
    MUTATE(h->ring_head = UINT64_MAX);
    MUTATE(h->ring_head = UINT64_MAX - 15);
    MUTATE(h->ring_records = UINT64_MAX);
    MUTATE((h->ring_records = 0, h->ring_head = 0));
    MUTATE(h->threshold_ns = UINT64_MAX);
    MUTATE(h->last_update_ns = UINT64_MAX);
    MUTATE(h->start_mono_ns = UINT64_MAX);
    MUTATE(h->threads_untracked = UINT64_MAX);
    MUTATE(h->samples_skipped = UINT64_MAX);

    /* The process: argc and argv_len beyond their arrays. */
    MUTATE(({
        struct st_process *p = (struct st_process *)(copy + h->process_offset);
        p->argc = UINT32_MAX;
        p->argv_len = UINT32_MAX;
        memset(p->argv, 'a', sizeof(p->argv));
        memset(p->exe, 'e', sizeof(p->exe));
    }));

    /* Thread slots: every counter at its maximum, the histogram full. */
    MUTATE(({
        for (uint32_t i = 0; i < h->thread_count; i++) {
            struct st_thread *t = (struct st_thread *)(copy + h->threads_offset + (uint64_t)i * h->thread_size);
            t->flags = UINT32_MAX;
            t->iterations = t->busy_ns = t->idle_ns = t->max_busy_ns = t->stalls = UINT64_MAX;
            for (unsigned b = 0; b < ST_HIST_BUCKETS; b++)
                t->busy_hist[b] = UINT64_MAX;
            t->live_iter_start_ns = t->live_call_start_ns = t->live_idle_since_ns = UINT64_MAX;
            t->created_ns = UINT64_MAX;
            t->exited_ns = 0;
            t->pool_idle_ns = t->lock_wait_ns = UINT64_MAX;
            t->live_call = UINT16_MAX;
            t->loop_call = UINT16_MAX;
        }
    }));

    /* Object slots: counters at their maximum, every member bit set. */
    MUTATE(({
        for (uint32_t i = 0; i < h->object_capacity; i++) {
            struct st_object *o = (struct st_object *)(copy + h->objects_offset + (uint64_t)i * h->object_size);
            if (!o->addr)
                continue;
            o->kind = UINT32_MAX;
            o->flags = UINT32_MAX;
            o->waits = o->wait_ns = o->max_wait_ns = o->long_waits = o->timeouts = UINT64_MAX;
            o->handoffs = o->releases = o->saturated_ns = o->saturations = UINT64_MAX;
            o->members = o->live_members = o->idle = UINT32_MAX;
            o->live_saturated_since_ns = 1;
            memset(o->member_bits, 0xff, sizeof(o->member_bits));
            memset(o->waker_bits, 0xff, sizeof(o->waker_bits));
        }
    }));

    /* Every record: the largest size, then the largest stack counts. */
    MUTATE(({
        uint8_t *ring = copy + h->ring_offset;
        for (uint64_t off = 0; off + sizeof(struct st_record) <= h->ring_size; off += ST_RECORD_ALIGN) {
            struct st_record *r = (struct st_record *)(ring + off);
            if (r->magic == ST_RECORD_MAGIC)
                r->size = UINT32_MAX & ~(ST_RECORD_ALIGN - 1);
        }
    }));
    MUTATE(({
        uint8_t *ring = copy + h->ring_offset;
        for (uint64_t off = 0; off + sizeof(struct st_rec_stall) <= h->ring_size; off += ST_RECORD_ALIGN) {
            struct st_rec_stall *r = (struct st_rec_stall *)(ring + off);
            if (r->hdr.magic == ST_RECORD_MAGIC && r->hdr.pos == off &&
                (r->hdr.type == ST_REC_STALL || r->hdr.type == ST_REC_SLOW_CALL)) {
                struct st_stack *s = (struct st_stack *)((uint8_t *)r + (r->hdr.type == ST_REC_STALL
                                    ? offsetof(struct st_rec_stall, stack)
                                    : offsetof(struct st_rec_slow_call, stack)));
                s->nframes = UINT16_MAX;
                s->npython = UINT16_MAX;
            }
        }
    }));
    MUTATE(({
        uint8_t *ring = copy + h->ring_offset;
        for (uint64_t off = 0; off + sizeof(struct st_rec_slow_call) <= h->ring_size; off += ST_RECORD_ALIGN) {
            struct st_rec_slow_call *r = (struct st_rec_slow_call *)(ring + off);
            if (r->hdr.magic == ST_RECORD_MAGIC && r->hdr.pos == off) {
                r->duration_ns = UINT64_MAX;
                r->start_ns = UINT64_MAX - 1;
                r->call = UINT16_MAX;
            }
        }
    }));
#undef MUTATE
    free(copy);
    free(buf);
}

/* Every section offset outside the file, or where offset + size overflows. */
Test(dump_abuse, offsets_outside_the_file)
{
    size_t len;
    uint8_t *buf = load("c_pool.dump", &len);
    uint8_t *copy = malloc(len);
    const uint64_t bad[] = {len, len - 1, len - 64, UINT64_MAX, UINT64_MAX - 63, (uint64_t)1 << 63};
    const size_t fields[] = {
        offsetof(struct st_file_header, process_offset), offsetof(struct st_file_header, modules_offset),
        offsetof(struct st_file_header, threads_offset), offsetof(struct st_file_header, objects_offset),
        offsetof(struct st_file_header, ring_offset),
    };
    for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++)
        for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
            memcpy(copy, buf, len);
            memcpy(copy + fields[f], &bad[b], sizeof(bad[b]));
            char *err = NULL;
            struct dump *d = dump_open_mem(copy, len, "off.dump", &err);
            cr_assert_null(d, "offset field %zu = %llu accepted", fields[f], (unsigned long long)bad[b]);
            cr_assert(strstr(err, "corrupted"), "%s", err);
            free(err);
        }
    free(copy);
    free(buf);
}

/* ---- Hostile records, built synthetically ------------------------------ */

static struct dump_builder *loop_dump(void)
{
    struct dump_builder *b = db_new(2, 2, 1 << 18);
    const char *argv[] = {"python3", "app.py"};
    db_set_process(b, 7, "/usr/bin/python3", 2, argv);
    db_add_module(b, "/nonexistent/python3", 0x400000, 0x800000, 0, ST_MODULE_MAIN);
    struct st_thread *t = db_add_thread(b, 7, "python3", ST_THREAD_LOOP);
    t->iterations = 10;
    t->busy_ns = 500000000;
    return b;
}

/* A stall whose stack names code objects: frames[] native, then Python. */
static void stall_with_python(struct dump_builder *b, uint64_t seq, const uint64_t *codes, size_t n,
                              uint32_t instr, uint32_t flags)
{
    uint8_t raw[sizeof(struct st_rec_stall) + 4 * 8 + ST_MAX_PYFRAMES * sizeof(struct st_pyframe)];
    struct st_rec_stall *r = (struct st_rec_stall *)raw;
    memset(raw, 0, sizeof(raw));
    r->tid = 7;
    r->call = ST_CALL_CLOCK_NANOSLEEP;
    r->iter_seq = seq;
    r->start_ns = seq * 1000000000ull;
    r->busy_ns = 300000000;
    r->stack.nframes = 4;
    r->stack.npython = (uint16_t)n;
    r->stack.python = ST_PY_OK;
    r->stack.unwinder = ST_UNWIND_LIBUNWIND;
    uint64_t *frames = (uint64_t *)(raw + sizeof(*r));
    for (int i = 0; i < 4; i++)
        frames[i] = 0x401000 + (uint64_t)i * 16;
    struct st_pyframe *py = (struct st_pyframe *)(frames + 4);
    for (size_t i = 0; i < n; i++)
        py[i] = (struct st_pyframe){codes[i], instr, flags};
    size_t len = sizeof(*r) + 4 * 8 + n * sizeof(*py);
    db_append(b, ST_REC_STALL, raw + sizeof(struct st_record), len - sizeof(struct st_record));
}

/* A code record with the given lengths; the bytes after it are `fill`. */
static void pycode(struct dump_builder *b, uint64_t code, uint16_t version, uint16_t qlen, uint16_t flen,
                   uint16_t tlen, const uint8_t *table, size_t have, uint32_t firstline)
{
    static uint8_t raw[1 << 17];
    struct st_rec_pycode *r = (struct st_rec_pycode *)raw;
    memset(raw, 'x', sizeof(raw));
    memset(r, 0, sizeof(*r));
    r->code = code;
    r->firstlineno = firstline;
    r->py_version = version;
    r->qualname_len = qlen;
    r->filename_len = flen;
    r->linetable_len = tlen;
    size_t names = (size_t)qlen + flen;
    if (names > have)
        names = have;
    size_t tl = have - names < tlen ? have - names : tlen;
    if (table)
        memcpy(raw + sizeof(*r) + names, table, tl);
    db_append(b, ST_REC_PYCODE, raw + sizeof(struct st_record), sizeof(*r) - sizeof(struct st_record) + have);
}

Test(dump_abuse, hostile_python_code_records, .timeout = 60)
{
    struct dump_builder *b = loop_dump();
    uint8_t ones[512], longs[600], wide[64];
    cap_memory();

    memset(ones, 0xff, sizeof(ones));            /* varints that never end */
    for (size_t i = 0; i < sizeof(longs); i += 6) {  /* +2^27 lines per entry: overflows int */
        uint8_t e[6] = {0x80 | (14 << 3) | 7, 0x40 | 0x3f, 0x40 | 0x3f, 0x40 | 0x3f, 0x40 | 0x3f, 0x01};
        memcpy(longs + i, e, 6);
    }
    memset(wide, 0x80 | (14 << 3) | 7, sizeof(wide));  /* every entry cut short */

    /* Lengths beyond the record, then consistent lengths with tables that lie. */
    pycode(b, 0x1000, 0x030b, UINT16_MAX, 0, 0, NULL, 8, 1);
    pycode(b, 0x1010, 0x030b, 4, UINT16_MAX, 0, NULL, 8, 1);
    pycode(b, 0x1020, 0x030b, 4, 4, UINT16_MAX, ones, 64, 1);
    pycode(b, 0x1030, 0x030c, 4, 4, sizeof(ones), ones, 8 + sizeof(ones), 1);
    pycode(b, 0x1040, 0x030c, 4, 4, sizeof(longs), longs, 8 + sizeof(longs), UINT32_MAX);
    pycode(b, 0x1050, 0x030d, 4, 4, sizeof(wide), wide, 8 + sizeof(wide), INT32_MAX);
    pycode(b, 0x1060, UINT16_MAX, 0, 0, sizeof(longs), longs, sizeof(longs), 5);
    /* Bigger than the reader copies: its table must not be read past that. */
    pycode(b, 0x1070, 0x030b, 100, 100, 60000, NULL, 200 + 60000, 1);
    pycode(b, 0, 0x030b, 4, 4, 0, NULL, 8, 1);

    const uint64_t codes[] = {0x1000, 0x1010, 0x1020, 0x1030, 0x1040, 0x1050, 0x1060, 0x1070, 0, 0xdead};
    const size_t ncodes = sizeof(codes) / sizeof(codes[0]);
    const uint32_t instrs[] = {0, 1, 7, 100, UINT32_MAX - 1, UINT32_MAX};
    for (size_t i = 0; i < sizeof(instrs) / sizeof(instrs[0]); i++) {
        stall_with_python(b, i + 1, codes, ncodes, instrs[i], 0);
        stall_with_python(b, i + 100, codes, ncodes, instrs[i], UINT32_MAX);
    }
    db_complete(b, 20000000000ull);
    cr_assert_eq(exercise(b->buf, b->len), 1);

    /* Each decoded line is a real line or "unknown", never garbage. */
    char *err = NULL;
    struct dump *d = dump_open_mem(b->buf, b->len, "py.dump", &err);
    cr_assert_not_null(d, "%s", err);
    for (size_t i = 0; i < d->pycodes.n; i++) {
        const struct py_code *c = &d->pycodes.v[i];
        cr_assert(c->linetable_len == 0 || c->linetable != NULL);
        for (size_t k = 0; k < sizeof(instrs) / sizeof(instrs[0]); k++) {
            int line = py_code_line(c, instrs[k]);
            cr_assert_geq(line, 0, "code 0x%llx: line %d", (unsigned long long)c->code, line);
        }
    }
    dump_free(d);
    db_free(b);
}

/* A JIT symbol whose name is longer than its record, or than what the reader
 * copies; one whose range wraps past the end of the address space. */
Test(dump_abuse, hostile_jit_symbols)
{
    struct dump_builder *b = loop_dump();
    static uint8_t raw[70000];
    struct st_rec_jitsym *r = (struct st_rec_jitsym *)raw;
    const size_t fixed = sizeof(*r) - sizeof(struct st_record);
    cap_memory();

    memset(raw, 'N', sizeof(raw));
    *r = (struct st_rec_jitsym){.start = 0x7000000, .size = 0x100, .name_len = UINT16_MAX};
    db_append(b, ST_REC_JITSYM, raw + sizeof(struct st_record), fixed + 16);
    *r = (struct st_rec_jitsym){.start = 0x7001000, .size = 0x100, .name_len = UINT16_MAX};
    db_append(b, ST_REC_JITSYM, raw + sizeof(struct st_record), fixed + UINT16_MAX);
    *r = (struct st_rec_jitsym){.start = UINT64_MAX - 0x10, .size = UINT32_MAX, .name_len = 4};
    db_append(b, ST_REC_JITSYM, raw + sizeof(struct st_record), fixed + 4);
    *r = (struct st_rec_jitsym){.start = 0x7002000, .size = 0, .name_len = 4};
    db_append(b, ST_REC_JITSYM, raw + sizeof(struct st_record), fixed + 4);
    /* A name with NULs and newlines in it. */
    *r = (struct st_rec_jitsym){.start = 0x7003000, .size = 0x100, .name_len = 8};
    memcpy(raw + sizeof(*r), "a\0b\nc\"<", 8);
    db_append(b, ST_REC_JITSYM, raw + sizeof(struct st_record), fixed + 8);

    const uint64_t frames[] = {0x7000010, 0x7001010, 0x20, 0x7002010, 0x7003010, UINT64_MAX};
    db_stall(b, 7, ST_CALL_NONE, 1, 1000, 300000000, frames, 6);
    db_complete(b, 2000000000);
    cr_assert_eq(exercise(b->buf, b->len), 1);

    char *err = NULL;
    struct dump *d = dump_open_mem(b->buf, b->len, "jit.dump", &err);
    cr_assert_not_null(d, "%s", err);
    for (size_t i = 0; i < d->njitsyms; i++)
        cr_assert(d->jitsyms[i].size > 0 && strlen(d->jitsyms[i].name) <= UINT16_MAX);
    /* Address 0x20 lies in no symbol, whatever the wrapping one claims. */
    struct model_options opt = {.threshold_ms = -1, .perf_map_dir = "/nonexistent"};
    struct m_process *p = model_build(d, &opt);
    cr_assert_eq(p->nstalls, 1);
    for (size_t i = 0; i < p->stalls[0].stack.n; i++) {
        const struct sym_frame *f = p->stalls[0].stack.frames[i];
        if (f->address == 0x20)
            cr_assert_null(f->function, "0x20 named %s", f->function);
    }
    model_free(p);
    dump_free(d);
    db_free(b);
}

/* The same things again and again: duplicate slots, records and iteration
 * numbers, code objects described many times, bitmaps naming absent slots. */
Test(dump_abuse, cyclic_and_duplicate_data, .timeout = 60)
{
    struct dump_builder *b = db_new_objects(4, 4, 4, 1 << 18);
    const uint64_t frames[] = {0x401000, 0x401010, 0x401020};
    cap_memory();

    db_set_process(b, 9, "/x", 0, NULL);
    for (int i = 0; i < 4; i++)
        db_add_module(b, "/nonexistent/x", 0x400000, 0x500000, 0, ST_MODULE_MAIN);
    for (int i = 0; i < 4; i++) {
        struct st_thread *t = db_add_thread(b, 9, "same", i & 1 ? ST_THREAD_LOOP : 0);
        t->idle_object = 0x600000;
        t->start_routine = 0x401000;
    }
    for (int i = 0; i < 4; i++) {
        struct st_object *o = db_add_object(b, 0x600000, i & 1 ? ST_OBJ_COND : ST_OBJ_SEM);
        o->flags = ST_OBJ_HANDOFF;
        o->members = 4;
        o->live_saturated_since_ns = 5;
        memset(o->member_bits, 0xff, sizeof(o->member_bits));
        memset(o->waker_bits, 0xff, sizeof(o->waker_bits));
    }
    for (uint64_t i = 0; i < 300; i++) {
        const uint64_t codes[] = {0x5000, 0x5000, 0x5000};
        pycode(b, 0x5000, 0x030b, 1, 1, 0, NULL, 2, (uint32_t)i);
        stall_with_python(b, i % 3, codes, 3, 0, ST_PYFRAME_ENTRY);
        db_sample(b, 9, i % 3, i, frames, 3);
        db_sample(b, 9, 12345, i, frames, 3);      /* of no stall */
        db_saturation(b, 0x600000, i, UINT64_MAX - i, UINT32_MAX);
        db_lock_wait(b, 9, ST_CALL_MUTEX_LOCK, ST_OBJ_MUTEX, 0x600000, 0, UINT64_MAX, UINT32_MAX, frames, 3);
        db_slow_call(b, 9, ST_CALL_SEM_WAIT, 0, 1, frames, 3);
    }
    db_complete(b, 1000);
    cr_assert_eq(exercise(b->buf, b->len), 1);
    db_free(b);
}

/* ---- A dump still being written by the recorder ----------------------- */

/* The real recorder writes while the analyzer reads its file again and
 * again: every read is a report of what is there, or a one-line refusal
 * (before the header is in place), never a crash. */
Test(dump_abuse, a_dump_read_while_the_recorder_writes_it, .timeout = 60)
{
    char dir[] = "/tmp/st_abuse_XXXXXX", path[64];
    size_t reads = 0, accepted = 0;
    int status;

    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/live.dump", dir);
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) {
        setenv("LD_PRELOAD", PRELOAD_SO, 1);
        setenv("STALLTRACE_OUTPUT", path, 1);
        setenv("STALLTRACE_BUFFER_MB", "1", 1);
        setenv("STALLTRACE_THRESHOLD_MS", "1", 1);
        setenv("ASAN_OPTIONS", "detect_leaks=0", 1);  /* the target never frees its pool */
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        execl(POOL_TARGET, POOL_TARGET, (char *)NULL);
        _exit(127);
    }
    while (waitpid(child, &status, WNOHANG) == 0) {
        char *err = NULL;
        if (access(path, F_OK) != 0) {
            usleep(1000);
            continue;
        }
        struct dump *d = dump_open_path(path, &err);
        reads++;
        if (!d) {
            cr_assert(err && !strchr(err, '\n') && !strstr(err, "out of memory"), "%s", err);
            free(err);
            continue;
        }
        accepted++;
        struct model_options opt = {.threshold_ms = -1, .perf_map_dir = "/nonexistent"};
        struct m_process *p = model_build(d, &opt);
        cr_assert_not_null(p);
        FILE *sink = fopen("/dev/null", "w");
        report_json(sink, &p, 1, NULL);
        report_text(sink, &p, 1, NULL);
        fclose(sink);
        /* complete is only claimed once the recorder said so. */
        if (p->complete)
            cr_assert(d->hdr.flags & ST_FLAG_COMPLETE);
        model_free(p);
        dump_free(d);
    }
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cr_assert_gt(accepted, 0, "%zu reads, none accepted", reads);
    unlink(path);
    cr_assert_eq(rmdir(dir), 0, "the recorder wrote more than one dump");
}

/* report_pprof.c - `report --format pprof`: a gzipped profile.proto of the
 * time sampling profilers cannot see (stalled loop time, lock and queue waits). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "grow.h"
#include "profile.pb-c.h"
#include "report.h"
#include "report_util.h"

/* Values of every sample, in this order. Times are in microseconds so that
 * pprof's totals equal the JSON report's milliseconds to three decimals. */
enum pprof_value {
    V_STALLED,                     /* a stall's duration, at its stack */
    V_STALL_SAMPLES,               /* one in-stall sample of a CPU-bound stall */
    V_LOCK_WAIT,                   /* a long wait on a lock */
    V_POOL_SATURATED,              /* pool busy time inside saturation spans */
    V_QUEUE_WAIT,                  /* a task's wait in its pool's queue */
    V_COUNT
};

static const char *const value_names[V_COUNT][2] = {
    {"stalled", "microseconds"},
    {"stall_samples", "count"},
    {"lock_wait", "microseconds"},
    {"pool_saturated_busy", "microseconds"},
    {"queue_wait", "microseconds"},
};

/* A table from a 64-bit key (a string's hash slot, a frame's address in
 * memory) to an id; open addressing, ids start at 1. */
struct id_table {
    uint64_t *keys, *ids;
    size_t cap, used;
};

struct pprof {
    struct id_table strings_by_hash;   /* hash -> string index + 1, probing on collision */
    char **strings;
    size_t nstrings, strings_cap;
    struct id_table functions_by_key;  /* (name, file) -> function id */
    Perftools__Profiles__Function **functions;
    size_t nfunctions, functions_cap;
    struct id_table locations_by_frame; /* innermost sym_frame -> location id */
    Perftools__Profiles__Location **locations;
    size_t nlocations, locations_cap;
    Perftools__Profiles__Mapping **mappings;
    size_t nmappings, mappings_cap;
    Perftools__Profiles__Sample **samples;
    size_t nsamples, samples_cap;
    bool failed;                       /* out of memory somewhere: the profile is not written */
};

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

/* The slot of key: where it is, or the empty slot it would go in. */
static size_t id_slot(const struct id_table *t, uint64_t key)
{
    size_t i = (size_t)mix64(key) & (t->cap - 1);
    while (t->ids[i] && t->keys[i] != key)
        i = (i + 1) & (t->cap - 1);
    return i;
}

static uint64_t id_find(const struct id_table *t, uint64_t key)
{
    return t->cap ? t->ids[id_slot(t, key)] : 0;
}

static int id_put(struct id_table *t, uint64_t key, uint64_t id)
{
    if ((t->used + 1) * 2 > t->cap) {
        struct id_table bigger = {0};
        bigger.cap = t->cap ? t->cap * 2 : 256;
        bigger.keys = calloc(bigger.cap, sizeof(*bigger.keys));
        bigger.ids = calloc(bigger.cap, sizeof(*bigger.ids));
        if (!bigger.keys || !bigger.ids) {
            free(bigger.keys);
            free(bigger.ids);
            return -1;
        }
        for (size_t i = 0; i < t->cap; i++)
            if (t->ids[i]) {
                size_t s = id_slot(&bigger, t->keys[i]);
                bigger.keys[s] = t->keys[i];
                bigger.ids[s] = t->ids[i];
            }
        bigger.used = t->used;
        free(t->keys);
        free(t->ids);
        *t = bigger;
    }
    size_t s = id_slot(t, key);
    t->keys[s] = key;
    t->ids[s] = id;
    t->used++;
    return 0;
}

static void id_free(struct id_table *t)
{
    free(t->keys);
    free(t->ids);
}

static uint64_t hash_string(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* The index of s in the string table, added if new; 0 ("") for NULL. Equal
 * hashes of different strings probe on to the next key. */
static int64_t string_id(struct pprof *pp, const char *s)
{
    if (!s || !*s || pp->failed)
        return 0;
    for (uint64_t key = hash_string(s);; key++) {
        uint64_t id = id_find(&pp->strings_by_hash, key);
        if (!id)
            break;
        if (strcmp(pp->strings[id - 1], s) == 0)
            return (int64_t)(id - 1);
    }
    char *copy = strdup(s);
    if (!copy || GROW(pp->strings, pp->strings_cap, pp->nstrings + 1, 64) < 0) {
        free(copy);
        pp->failed = true;
        return 0;
    }
    uint64_t key = hash_string(s);
    while (id_find(&pp->strings_by_hash, key))
        key++;
    pp->strings[pp->nstrings++] = copy;
    if (id_put(&pp->strings_by_hash, key, pp->nstrings) < 0)
        pp->failed = true;
    return (int64_t)(pp->nstrings - 1);
}

static uint64_t function_id(struct pprof *pp, const struct sym_frame *f)
{
    char label[512];
    frame_label(f, label, sizeof(label));
    int64_t name = string_id(pp, label), file = string_id(pp, f->file);
    uint64_t key = ((uint64_t)name << 32) ^ (uint64_t)file;
    uint64_t id = id_find(&pp->functions_by_key, key);
    if (id || pp->failed)
        return id;

    Perftools__Profiles__Function *fn = malloc(sizeof(*fn));
    if (!fn || GROW(pp->functions, pp->functions_cap, pp->nfunctions + 1, 64) < 0) {
        free(fn);
        pp->failed = true;
        return 0;
    }
    perftools__profiles__function__init(fn);
    fn->id = pp->nfunctions + 1;
    fn->name = name;
    fn->system_name = name;
    fn->filename = file;
    pp->functions[pp->nfunctions++] = fn;
    if (id_put(&pp->functions_by_key, key, fn->id) < 0)
        pp->failed = true;
    return fn->id;
}

/* The mapping id of the module holding a native frame's address (mappings
 * first..nmappings are this process's), 0 for Python and JIT frames. */
static uint64_t mapping_of(const struct pprof *pp, size_t first, const struct sym_frame *f)
{
    if (!f->kind || strcmp(f->kind, "native") != 0)
        return 0;
    for (size_t i = pp->nmappings; i-- > first;)
        if (f->address >= pp->mappings[i]->memory_start && f->address < pp->mappings[i]->memory_limit)
            return pp->mappings[i]->id;
    return 0;
}

/* One location per frame and the frames inlined into it: its lines are the
 * inlined functions first, the one they were inlined into last. Returns the
 * location's id; *used: how many stack frames it took. */
static uint64_t location_id(struct pprof *pp, size_t first_mapping, const struct m_stack *s, size_t at,
                            size_t *used)
{
    const struct sym_frame *f = s->frames[at];
    size_t n = 1;

    while (at + n < s->n && s->frames[at + n - 1]->inlined && s->frames[at + n - 1]->caller == s->frames[at + n])
        n++;
    *used = n;
    uint64_t id = id_find(&pp->locations_by_frame, (uint64_t)(uintptr_t)f);
    if (id || pp->failed)
        return id;

    Perftools__Profiles__Location *loc = malloc(sizeof(*loc));
    Perftools__Profiles__Line **lines = calloc(n, sizeof(*lines));
    if (!loc || !lines || GROW(pp->locations, pp->locations_cap, pp->nlocations + 1, 64) < 0) {
        free(loc);
        free(lines);
        pp->failed = true;
        return 0;
    }
    perftools__profiles__location__init(loc);
    loc->id = pp->nlocations + 1;
    loc->address = f->kind && strcmp(f->kind, "python") == 0 ? 0 : f->address;
    loc->mapping_id = mapping_of(pp, first_mapping, f);
    loc->line = lines;
    pp->locations[pp->nlocations++] = loc;
    /* An unnamed native frame has no line: pprof's symbolizers name it from
     * its mapping's build-id, which they may know and we did not. */
    if (!f->function && loc->mapping_id) {
        pp->mappings[loc->mapping_id - 1]->has_functions = false;
        n = 0;
    }
    for (size_t i = 0; i < n; i++) {
        const struct sym_frame *g = s->frames[at + i];
        Perftools__Profiles__Line *line = malloc(sizeof(*line));
        if (!line) {
            pp->failed = true;
            break;
        }
        perftools__profiles__line__init(line);
        line->function_id = function_id(pp, g);
        line->line = g->line > 0 ? g->line : 0;
        lines[loc->n_line++] = line;
    }
    if (id_put(&pp->locations_by_frame, (uint64_t)(uintptr_t)f, loc->id) < 0)
        pp->failed = true;
    return loc->id;
}

static void add_label(Perftools__Profiles__Label **labels, size_t *n, int64_t key, int64_t str, int64_t num)
{
    Perftools__Profiles__Label *l = malloc(sizeof(*l));
    if (!l)
        return;
    perftools__profiles__label__init(l);
    l->key = key;
    l->str = str;
    l->num = num;
    labels[(*n)++] = l;
}

/* What a sample is about, for its labels. */
struct sample_of {
    const struct m_process *p;
    size_t first_mapping;
    uint32_t tid;
    const char *call;
    const char *pool;
    const struct m_stack *stack;
};

#define MAX_LABELS 6

static void add_sample(struct pprof *pp, const struct sample_of *of, enum pprof_value which, double amount)
{
    if (pp->failed)
        return;
    Perftools__Profiles__Sample *sm = malloc(sizeof(*sm));
    int64_t *values = calloc(V_COUNT, sizeof(*values));
    uint64_t *locs = calloc(of->stack->n ? of->stack->n : 1, sizeof(*locs));
    Perftools__Profiles__Label **labels = calloc(MAX_LABELS, sizeof(*labels));
    if (!sm || !values || !locs || !labels || GROW(pp->samples, pp->samples_cap, pp->nsamples + 1, 64) < 0) {
        free(sm);
        free(values);
        free(locs);
        free(labels);
        pp->failed = true;
        return;
    }
    perftools__profiles__sample__init(sm);
    pp->samples[pp->nsamples++] = sm;
    values[which] = which == V_STALL_SAMPLES ? (int64_t)amount : (int64_t)(amount * 1000.0 + 0.5);
    sm->value = values;
    sm->n_value = V_COUNT;
    sm->location_id = locs;
    for (size_t at = 0, used; at < of->stack->n; at += used)
        locs[sm->n_location_id++] = location_id(pp, of->first_mapping, of->stack, at, &used);

    char text[512];
    const struct m_thread *t = thread_by_tid(of->p, of->tid);
    sm->label = labels;
    add_label(labels, &sm->n_label, string_id(pp, "pid"), 0, of->p->pid);
    if (of->tid)
        add_label(labels, &sm->n_label, string_id(pp, "tid"), 0, of->tid);
    if (t && t->name[0])
        add_label(labels, &sm->n_label, string_id(pp, "thread"), string_id(pp, t->name), 0);
    if (of->call)
        add_label(labels, &sm->n_label, string_id(pp, "call"), string_id(pp, of->call), 0);
    if (of->pool)
        add_label(labels, &sm->n_label, string_id(pp, "pool"), string_id(pp, of->pool), 0);
    size_t c = frames_culprit(of->stack);
    if (c < of->stack->n) {
        frames_describe(of->stack->frames[c], text, sizeof(text));
        add_label(labels, &sm->n_label, string_id(pp, "culprit"), string_id(pp, text), 0);
    }
}

static void add_mappings(struct pprof *pp, const struct m_process *p)
{
    const struct dump *d = p->dump;
    char hex[2 * ST_BUILD_ID_MAX + 1];

    for (uint32_t i = 0; i < d->nmodules && !pp->failed; i++) {
        const struct st_module *m = &d->modules[i];
        Perftools__Profiles__Mapping *mp = malloc(sizeof(*mp));
        if (!mp || GROW(pp->mappings, pp->mappings_cap, pp->nmappings + 1, 64) < 0) {
            free(mp);
            pp->failed = true;
            return;
        }
        perftools__profiles__mapping__init(mp);
        mp->id = pp->nmappings + 1;
        mp->memory_start = m->start;
        mp->memory_limit = m->end;
        /* The first PT_LOAD segment maps the file from offset 0 (it holds the
         * ELF header), so the range's start is the file's start. */
        mp->file_offset = 0;
        mp->filename = string_id(pp, m->path);
        size_t len = m->build_id_len < ST_BUILD_ID_MAX ? m->build_id_len : ST_BUILD_ID_MAX;
        for (size_t b = 0; b < len; b++)
            snprintf(hex + 2 * b, 3, "%02x", m->build_id[b]);
        hex[2 * len] = '\0';
        mp->build_id = string_id(pp, hex);
        mp->has_functions = true;
        mp->has_filenames = true;
        mp->has_line_numbers = true;
        mp->has_inline_frames = true;
        pp->mappings[pp->nmappings++] = mp;
    }
}

static void pool_name(const struct m_pool *pool, char *buf, size_t len)
{
    snprintf(buf, len, "%s pool %d", pool->kind ? pool->kind : "thread", pool->id);
}

static const struct m_pool *pool_of_thread(const struct m_process *p, uint32_t tid)
{
    const struct m_thread *t = thread_by_tid(p, tid);
    for (size_t i = 0; t && t->pool >= 0 && i < p->npools; i++)
        if (p->pools[i].id == t->pool)
            return &p->pools[i];
    return NULL;
}

static void add_process(struct pprof *pp, const struct m_process *p)
{
    struct sample_of of = {.p = p, .first_mapping = pp->nmappings};
    char pool[96];

    add_mappings(pp, p);
    for (size_t i = 0; i < p->nstalls; i++) {
        const struct m_stall *st = &p->stalls[i];
        of.tid = st->tid;
        of.call = st->call;
        of.pool = NULL;
        of.stack = &st->stack;
        add_sample(pp, &of, V_STALLED, st->duration_ms);
        for (size_t j = 0; j < st->nsamples; j++) {
            of.stack = &st->samples[j].stack;
            add_sample(pp, &of, V_STALL_SAMPLES, 1);
        }
    }
    /* The locks the report lists (not a pool's queue, where workers idle):
     * each long wait at its own stack, and what the lock's table adds up
     * beyond them (short waits) at the stack seen most. */
    for (size_t i = 0; i < p->nlocks; i++) {
        const struct m_lock *l = &p->locks[i];
        double in_waits = 0;
        for (size_t j = 0; j < p->nlock_waits; j++) {
            const struct m_lock_wait *w = &p->lock_waits[j];
            if (w->object != l->object)
                continue;
            const struct m_pool *in = pool_of_thread(p, w->tid);
            if (in)
                pool_name(in, pool, sizeof(pool));
            of = (struct sample_of){p, of.first_mapping, w->tid, w->call, in ? pool : NULL, &w->stack};
            add_sample(pp, &of, V_LOCK_WAIT, w->duration_ms);
            in_waits += w->duration_ms;
        }
        if (l->wait_total_ms > in_waits) {
            of = (struct sample_of){p, of.first_mapping, 0, l->call, NULL, &l->stack};
            add_sample(pp, &of, V_LOCK_WAIT, l->wait_total_ms - in_waits);
        }
    }
    for (size_t i = 0; i < p->npools; i++) {
        const struct m_pool *pl = &p->pools[i];
        pool_name(pl, pool, sizeof(pool));
        for (size_t j = 0; j < pl->nbusy; j++) {
            if (!(pl->busy_in[j].saturated_ms > 0))
                continue;
            of = (struct sample_of){p, of.first_mapping, pl->nthreads ? pl->tids[0] : 0,
                                    pl->busy_in[j].call, pool, &pl->busy_in[j].stack};
            add_sample(pp, &of, V_POOL_SATURATED, pl->busy_in[j].saturated_ms);
        }
    }
    for (size_t i = 0; i < p->nqueues; i++) {
        const struct m_queue *q = &p->queues[i];
        for (size_t j = 0; j < q->nlong; j++) {
            const struct m_task_wait *w = &q->longs[j];
            of = (struct sample_of){p, of.first_mapping, w->submit_tid, NULL, q->name, &w->stack};
            add_sample(pp, &of, V_QUEUE_WAIT, w->wait_ms);
        }
    }
}

static void free_pprof(struct pprof *pp)
{
    for (size_t i = 0; i < pp->nstrings; i++)
        free(pp->strings[i]);
    free(pp->strings);
    for (size_t i = 0; i < pp->nfunctions; i++)
        free(pp->functions[i]);
    free(pp->functions);
    for (size_t i = 0; i < pp->nlocations; i++) {
        for (size_t j = 0; j < pp->locations[i]->n_line; j++)
            free(pp->locations[i]->line[j]);
        free(pp->locations[i]->line);
        free(pp->locations[i]);
    }
    free(pp->locations);
    for (size_t i = 0; i < pp->nmappings; i++)
        free(pp->mappings[i]);
    free(pp->mappings);
    for (size_t i = 0; i < pp->nsamples; i++) {
        for (size_t j = 0; j < pp->samples[i]->n_label; j++)
            free(pp->samples[i]->label[j]);
        free(pp->samples[i]->label);
        free(pp->samples[i]->location_id);
        free(pp->samples[i]->value);
        free(pp->samples[i]);
    }
    free(pp->samples);
    id_free(&pp->strings_by_hash);
    id_free(&pp->functions_by_key);
    id_free(&pp->locations_by_frame);
}

/* gzip (windowBits 31: a gzip header, as pprof's readers expect) of buf. */
static int write_gzip(FILE *out, const uint8_t *buf, size_t len)
{
    z_stream z = {0};
    uint8_t chunk[65536];
    int rc;

    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    z.next_in = (uint8_t *)buf;
    z.avail_in = (uInt)len;
    do {
        z.next_out = chunk;
        z.avail_out = sizeof(chunk);
        rc = deflate(&z, Z_FINISH);
        if (rc == Z_STREAM_ERROR ||
            fwrite(chunk, 1, sizeof(chunk) - z.avail_out, out) != sizeof(chunk) - z.avail_out) {
            deflateEnd(&z);
            return -1;
        }
    } while (rc != Z_STREAM_END);
    deflateEnd(&z);
    return 0;
}

int report_pprof(FILE *out, struct m_process **procs, size_t n, const struct report_options *opt)
{
    (void)opt;
    struct pprof pp = {0};
    Perftools__Profiles__Profile prof = PERFTOOLS__PROFILES__PROFILE__INIT;
    Perftools__Profiles__ValueType types[V_COUNT], *type_ptrs[V_COUNT];
    int64_t comment;
    int rc = -1;

    if (GROW(pp.strings, pp.strings_cap, 1, 64) == 0 && (pp.strings[0] = strdup(""))) /* entry 0 must be "" */
        pp.nstrings = 1;
    else
        pp.failed = true;
    for (int v = 0; v < V_COUNT; v++) {
        perftools__profiles__value_type__init(&types[v]);
        types[v].type = string_id(&pp, value_names[v][0]);
        types[v].unit = string_id(&pp, value_names[v][1]);
        type_ptrs[v] = &types[v];
    }
    comment = string_id(&pp, "stalltrace: off-CPU and blocked time of event loops and pools");

    uint64_t first_ns = UINT64_MAX, last_ns = 0;
    for (size_t i = 0; i < n; i++) {
        add_process(&pp, procs[i]);
        uint64_t start = procs[i]->dump->hdr.start_real_ns;
        uint64_t end = start + (uint64_t)(procs[i]->duration_s * 1e9);
        first_ns = start < first_ns ? start : first_ns;
        last_ns = end > last_ns ? end : last_ns;
    }
    if (pp.failed)
        goto done;

    prof.n_sample_type = V_COUNT;
    prof.sample_type = type_ptrs;
    prof.default_sample_type = types[V_STALLED].type;
    prof.n_sample = pp.nsamples;
    prof.sample = pp.samples;
    prof.n_mapping = pp.nmappings;
    prof.mapping = pp.mappings;
    prof.n_location = pp.nlocations;
    prof.location = pp.locations;
    prof.n_function = pp.nfunctions;
    prof.function = pp.functions;
    prof.n_string_table = pp.nstrings;
    prof.string_table = pp.strings;
    prof.n_comment = 1;
    prof.comment = &comment;
    if (n > 0) {
        prof.time_nanos = (int64_t)first_ns;
        prof.duration_nanos = (int64_t)(last_ns - first_ns);
    }

    size_t len = perftools__profiles__profile__get_packed_size(&prof);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf) {
        perftools__profiles__profile__pack(&prof, buf);
        rc = write_gzip(out, buf, len);
        free(buf);
    }
done:
    free_pprof(&pp);
    return rc == 0 && !ferror(out) ? 0 : -1;
}

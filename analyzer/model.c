/* model.c - turns a loaded dump into the report model: loop figures from the
 * histograms, stalls joined with their samples and sites; then pools, locks
 * and the diagnosis (pools.c, locks.c, diagnosis.c). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "model_build.h"
#include "pyframes.h"

double model_hist_quantile(const uint64_t *hist, uint64_t max_ns, double q)
{
    uint64_t total = 0, cum = 0;
    unsigned b;

    for (b = 0; b < ST_HIST_BUCKETS; b++)
        total += hist[b];
    if (total == 0)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;

    double rank = q * (double)total;
    for (b = 0; b < ST_HIST_BUCKETS; b++) {
        if (hist[b] == 0)
            continue;
        if ((double)(cum + hist[b]) >= rank) {
            double lo = (double)st_hist_bucket_floor_ns(b);
            double hi = b + 1 < ST_HIST_BUCKETS ? (double)st_hist_bucket_floor_ns(b + 1)
                                                : (max_ns > lo ? (double)max_ns : lo * 2);
            /* The largest value is known exactly: a bucket cannot reach past it. */
            if (max_ns > 0 && hi > (double)max_ns)
                hi = (double)max_ns > lo ? (double)max_ns : lo;
            double v = lo + (hi - lo) * ((rank - (double)cum) / (double)hist[b]);
            return (max_ns > 0 && v > (double)max_ns) ? (double)max_ns : v;
        }
        cum += hist[b];
    }
    return (double)max_ns;
}

const char *model_call_name(unsigned call)
{
    if (call == ST_CALL_NONE)
        return NULL;
    const char *n = dump_call_name(call);
    return n ? n : "unknown call";
}

/* stalltrace's own Python hook wraps the user's executor tasks: its frames
 * are ours, like the recorder's, and no report shows them. */
static void drop_hook_frames(struct m_stack *s)
{
    size_t n = 0;

    for (size_t i = 0; i < s->n; i++) {
        const struct sym_frame *f = s->frames[i];
        if (strcmp(f->kind, "python") == 0 && f->file && strstr(f->file, "stalltrace_hook/"))
            continue;
        s->frames[n++] = f;
    }
    s->n = n;
}

/* Name a recorded stack; frames of the recorder are dropped, and inlined
 * functions become frames of their own (at the same address). */
int model_make_stack(struct m_process *p, const struct dump_stack *ds, uint64_t at_ns,
                     struct m_stack *out)
{
    const struct sym_frame *f;
    size_t i, n = 0, cap = ds->nframes;

    memset(out, 0, sizeof(*out));
    out->truncated = ds->truncated != 0;
    if (ds->nframes == 0) {
        if (py_splice(p->py, ds, &out->frames, &out->n) < 0)
            return -1;
        drop_hook_frames(out);
        return 0;
    }
    out->frames = calloc(cap, sizeof(*out->frames));
    if (!out->frames)
        return -1;
    for (i = 0; i < ds->nframes; i++) {
        f = sym_lookup_at(p->sym, ds->frames[i], i == 0, at_ns, ds->jit_map_bytes);
        if (!f)
            return -1;
        for (; f; f = f->caller) {
            if (f->hidden)
                continue;
            if (n == cap) {
                const struct sym_frame **more = realloc(out->frames, cap * 2 * sizeof(*more));
                if (!more)
                    return -1;
                out->frames = more;
                cap *= 2;
            }
            out->frames[n++] = f;
            out->n = n;
        }
    }
    if (py_splice(p->py, ds, &out->frames, &out->n) < 0)
        return -1;
    drop_hook_frames(out);
    return 0;
}

static bool same_raw_stack(const struct dump_stack *a, const struct dump_stack *b)
{
    return a->nframes == b->nframes &&
           (a->nframes == 0 || memcmp(a->frames, b->frames, a->nframes * sizeof(uint64_t)) == 0);
}

static int cmp_str(const char *a, const char *b)
{
    if (!a || !b)
        return a == b ? 0 : (a ? 1 : -1);
    return strcmp(a, b);
}

/* Two named frames are the same place when function and line agree. */
static bool same_frame(const struct sym_frame *a, const struct sym_frame *b)
{
    if (a == b)
        return true;
    if (!a->function || !b->function)
        return a->address == b->address;
    return cmp_str(a->function, b->function) == 0 && cmp_str(a->file, b->file) == 0 &&
           a->line == b->line && cmp_str(a->module, b->module) == 0;
}

static bool same_place(const struct m_stack *a, const struct m_stack *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (!same_frame(a->frames[i], b->frames[i]))
            return false;
    return true;
}

static bool same_site(const char *call, bool starved, const struct m_stack *key,
                      const struct m_site *site)
{
    return cmp_str(call, site->call) == 0 && starved == site->starved && same_place(key, &site->key);
}

/* A total order on (call, named stack) that agrees with same_site: equal
 * places compare 0, so sorting brings each place's members together. */
static int cmp_frame(const struct sym_frame *a, const struct sym_frame *b)
{
    int c;

    if (a == b)
        return 0;
    if (!a->function || !b->function) {
        if (a->function || b->function)
            return a->function ? 1 : -1;
        return a->address < b->address ? -1 : a->address > b->address;
    }
    if ((c = cmp_str(a->function, b->function)) || (c = cmp_str(a->file, b->file)) ||
        (c = cmp_str(a->module, b->module)))
        return c;
    return a->line < b->line ? -1 : a->line > b->line;
}

int model_cmp_place(const char *call_a, const struct m_stack *a, const char *call_b,
                    const struct m_stack *b)
{
    size_t i;
    int c = cmp_str(call_a, call_b);

    if (c)
        return c;
    if (a->n != b->n)
        return a->n < b->n ? -1 : 1;
    for (i = 0; i < a->n; i++)
        if ((c = cmp_frame(a->frames[i], b->frames[i])))
            return c;
    return 0;
}

const char *model_object_kind(unsigned kind)
{
    switch (kind) {
    case ST_OBJ_MUTEX: return "mutex";
    case ST_OBJ_RWLOCK: return "rwlock";
    case ST_OBJ_COND: return "cond";
    case ST_OBJ_SEM: return "sem";
    default: return "unknown";
    }
}

bool model_data_symbol(struct m_process *p, uint64_t addr, char *buf, size_t len, bool *py_runtime)
{
    char name[256];
    uint64_t off;

    *py_runtime = false;
    buf[0] = '\0';
    if (!sym_data_symbol(p->sym, addr, p->dump->hdr.last_update_ns, name, sizeof(name), &off))
        return false;
    /* CPython keeps the GIL and the interpreters' state in this one variable. */
    *py_runtime = strcmp(name, "_PyRuntime") == 0;
    snprintf(buf, len, "%s+0x%llx", name, (unsigned long long)off);
    return true;
}

/* Events by (tid, iter_seq, at_ns, pos): stalls and their samples line up by
 * iteration (a stall's at_ns is 0). */
static int cmp_iteration(const void *a, const void *b)
{
    const struct dump_event *x = *(const struct dump_event *const *)a;
    const struct dump_event *y = *(const struct dump_event *const *)b;
    if (x->tid != y->tid)
        return x->tid < y->tid ? -1 : 1;
    if (x->iter_seq != y->iter_seq)
        return x->iter_seq < y->iter_seq ? -1 : 1;
    if (x->at_ns != y->at_ns)
        return x->at_ns < y->at_ns ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static size_t first_sample(const struct dump_event **idx, size_t n, uint32_t tid, uint64_t seq)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (idx[mid]->tid < tid || (idx[mid]->tid == tid && idx[mid]->iter_seq < seq))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Order sample indices by their raw stack, then by time. */
static int cmp_sample_stack(const void *a, const void *b, void *arg)
{
    const struct dump_event **samples = arg;
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    const struct dump_stack *s = &samples[x]->stack, *t = &samples[y]->stack;
    if (s->nframes != t->nframes)
        return s->nframes < t->nframes ? -1 : 1;
    int c = s->nframes ? memcmp(s->frames, t->frames, s->nframes * sizeof(uint64_t)) : 0;
    if (c)
        return c;
    return x < y ? -1 : x > y;
}

/* The stack seen most often among n samples (the earliest on a tie); sorts
 * rather than compares all pairs, since a hostile dump can hold many. */
static const struct dump_stack *most_common_stack(const struct dump_event **samples, size_t n)
{
    size_t *order = calloc(n, sizeof(*order)), i, run = 0, best = 0, best_count = 0;

    if (!order)
        return &samples[0]->stack;
    for (i = 0; i < n; i++)
        order[i] = i;
    qsort_r(order, n, sizeof(*order), cmp_sample_stack, (void *)samples);
    for (i = 0; i < n; i++) {
        if (i == 0 || !same_raw_stack(&samples[order[i]]->stack, &samples[order[i - 1]]->stack))
            run = i;
        size_t count = i - run + 1, first = order[run];
        if (count > best_count || (count == best_count && first < best)) {
            best_count = count;
            best = first;
        }
    }
    free(order);
    return &samples[best]->stack;
}

/* The sample whose place (frames_place_key) most of the stall's samples
 * share, the first on a tie: raw stacks of CPU-bound work all differ, and
 * the earliest of them may be one whose unwinding lost the culprit. Looks
 * at the first samples only, as a hostile dump can hold many; SIZE_MAX
 * when out of memory or no sample names a place. */
#define PLACE_SAMPLES_MAX 128
static size_t most_common_place(const struct m_stall *st)
{
    size_t n = st->nsamples < PLACE_SAMPLES_MAX ? st->nsamples : PLACE_SAMPLES_MAX;
    struct m_stack keys[PLACE_SAMPLES_MAX];
    size_t made = 0, best = SIZE_MAX, best_count = 0;

    for (; made < n; made++)
        if (frames_place_key(&st->samples[made].stack, &keys[made]) < 0)
            break;
    for (size_t a = 0; made == n && a < n; a++) {
        size_t count = 0;
        if (keys[a].n == 0)
            continue;
        for (size_t b = 0; b < n; b++)
            count += same_place(&keys[a], &keys[b]);
        if (count > best_count) {
            best_count = count;
            best = a;
        }
    }
    for (size_t a = 0; a < made; a++)
        free(keys[a].frames);
    return best;
}

/* Fill a stall's samples; when it has no call, its stack is a sample of the
 * place seen most often, else the raw stack seen most often. */
static int join_samples(struct m_process *p, struct m_stall *st, const struct dump_stack *own,
                        uint64_t start_ns, const struct dump_event **idx, size_t nidx)
{
    size_t i = first_sample(idx, nidx, st->tid, st->iter_seq), j, n = 0;

    while (i + n < nidx && idx[i + n]->tid == st->tid && idx[i + n]->iter_seq == st->iter_seq)
        n++;
    if (n) {
        st->samples = calloc(n, sizeof(*st->samples));
        if (!st->samples)
            return -1;
    }
    for (j = 0; j < n; j++) {
        const struct dump_event *e = idx[i + j];
        struct m_sample *s = &st->samples[st->nsamples++];
        s->at_ms = e->at_ns >= start_ns ? (double)(e->at_ns - start_ns) / 1e6 : 0;
        if (model_make_stack(p, &e->stack, e->at_ns, &s->stack) < 0)
            return -1;
    }
    if (!st->call && n) {
        size_t k = most_common_place(st);
        const struct dump_stack *chosen = k == SIZE_MAX ? most_common_stack(idx + i, n) : &idx[i + k]->stack;
        return model_make_stack(p, chosen, idx[i]->at_ns, &st->stack);
    }
    return model_make_stack(p, own, start_ns, &st->stack);
}

static int cmp_stall(const void *a, const void *b)
{
    const struct m_stall *x = a, *y = b;
    if (x->start_s != y->start_s)
        return x->start_s < y->start_s ? -1 : 1;
    return x->tid < y->tid ? -1 : x->tid > y->tid;
}

static int cmp_site_index(const void *a, const void *b, void *arg)
{
    const struct m_site *sites = arg;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    const struct m_site *x = &sites[i], *y = &sites[j];
    if (x->total_ms != y->total_ms)
        return x->total_ms > y->total_ms ? -1 : 1;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return i < j ? -1 : i > j;
}

static int build_threads(struct m_process *p, const struct dump *d)
{
    uint32_t i;

    p->threads = calloc(d->nthreads ? d->nthreads : 1, sizeof(*p->threads));
    if (!p->threads)
        return -1;
    for (i = 0; i < d->nthreads; i++) {
        const struct st_thread *t = &d->threads[i];
        struct m_thread *m = &p->threads[p->nthreads++];

        m->tid = t->tid;
        snprintf(m->name, sizeof(m->name), "%s", t->name);
        m->is_loop = (t->flags & ST_THREAD_LOOP) != 0;
        m->exited = (t->flags & ST_THREAD_EXITED) != 0;
        m->pool = -1;
        m->loop.iterations = t->iterations;
        m->loop.stalls = t->stalls;
        m->loop.busy_s = (double)t->busy_ns / 1e9;
        double all = (double)t->busy_ns + (double)t->idle_ns;
        m->loop.utilization = all > 0 ? (double)t->busy_ns / all : 0;
        m->loop.p50_ms = model_hist_quantile(t->busy_hist, t->max_busy_ns, 0.50) / 1e6;
        m->loop.p99_ms = model_hist_quantile(t->busy_hist, t->max_busy_ns, 0.99) / 1e6;
        m->loop.max_ms = (double)t->max_busy_ns / 1e6;
    }
    return 0;
}

static struct m_stall *new_stall(struct m_process *p, size_t *cap)
{
    if (p->nstalls == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        struct m_stall *s = realloc(p->stalls, nc * sizeof(*s));
        if (!s)
            return NULL;
        p->stalls = s;
        *cap = nc;
    }
    struct m_stall *st = &p->stalls[p->nstalls++];
    memset(st, 0, sizeof(*st));
    return st;
}

static int cmp_stall_call(const void *a, const void *b)
{
    const struct m_stall_call *x = a, *y = b;
    if (x->total_ms != y->total_ms)
        return x->total_ms > y->total_ms ? -1 : 1;
    return strcmp(x->call ? x->call : "", y->call ? y->call : "");
}

/* A stall's call kinds and CPU figures, from the records written before it
 * (details: those records, by iteration). */
static int join_details(struct m_process *p, struct m_stall *st, const struct dump_event **details,
                        size_t ndetails)
{
    size_t i = first_sample(details, ndetails, st->tid, st->iter_seq), n = 0;

    st->cpu_ms = st->runq_ms = -1;
    while (i + n < ndetails && details[i + n]->tid == st->tid &&
           details[i + n]->iter_seq == st->iter_seq)
        n++;
    for (size_t j = 0; j < n; j++) {
        const struct dump_event *e = details[i + j];
        if (e->type == ST_REC_STALL_CPU) {
            double window_ms = (double)e->duration_ns / 1e6;
            st->cpu_ms = fmin((double)e->cpu_ns / 1e6, st->duration_ms);
            st->runq_ms = fmin((double)e->runq_ns / 1e6, st->duration_ms);
            /* Starved: with the CPU it waited for, the iteration would not
             * have reached the threshold. Work that stalls anyway is the
             * program's, however much a busy machine stretched it. */
            st->starved = window_ms > 0 && st->duration_ms - st->runq_ms < p->threshold_ms;
            continue;
        }
        const char *name = model_call_name(e->call);
        if (!name || st->ncalls >= ST_STALL_CALLS)
            continue;
        if (!st->calls && !(st->calls = calloc(ST_STALL_CALLS, sizeof(*st->calls))))
            return -1;
        struct m_stall_call *c = &st->calls[st->ncalls++];
        c->call = name;
        c->count = e->count;
        c->total_ms = (double)e->duration_ns / 1e6;
        c->max_ms = (double)e->call_ns / 1e6;
        if (model_make_stack(p, &e->stack, (uint64_t)(st->start_s * 1e9),
                             &c->stack) < 0)
            return -1;
    }
    if (st->ncalls > 1)
        qsort(st->calls, st->ncalls, sizeof(*st->calls), cmp_stall_call);
    return 0;
}

static void free_stall(struct m_stall *st)
{
    size_t i;

    for (i = 0; i < st->ncalls; i++)
        free(st->calls[i].stack.frames);
    free(st->calls);
    free(st->stack.frames);
    for (i = 0; i < st->nsamples; i++)
        free(st->samples[i].stack.frames);
    free(st->samples);
}

static bool has_stall(const struct dump_event **sv, size_t n, uint32_t tid, uint64_t seq)
{
    struct dump_event key = {.tid = tid, .iter_seq = seq, .pos = 0};
    const struct dump_event *k = &key;
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp_iteration(&sv[mid], &k) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && sv[lo]->tid == tid && sv[lo]->iter_seq == seq;
}

static int build_stalls(struct m_process *p, const struct dump *d, double threshold_ms,
                        const struct dump_event **idx, size_t nidx)
{
    size_t i, n = 0, cap = 0;
    double keep_ms = threshold_ms >= 0 ? threshold_ms : 0;
    size_t ndetails = 0;
    const struct dump_event **sv = calloc(d->nevents ? d->nevents : 1, sizeof(*sv));
    const struct dump_event **details = calloc(d->nevents ? d->nevents : 1, sizeof(*details));

    if (!sv || !details) {
        free(sv);
        free(details);
        return -1;
    }
    for (i = 0; i < d->nevents; i++) {
        uint16_t type = d->events[i].type;
        if (type == ST_REC_STALL)
            sv[n++] = &d->events[i];
        else if (type == ST_REC_STALL_CALL || type == ST_REC_STALL_CPU)
            details[ndetails++] = &d->events[i];
    }
    if (n > 1)
        qsort(sv, n, sizeof(*sv), cmp_iteration);
    if (ndetails > 1)
        qsort(details, ndetails, sizeof(*details), cmp_iteration);

    for (i = 0; i < n; i++) {
        const struct dump_event *e = sv[i];
        /* A repeated iteration (a recorder bug, or hostile bytes) gets no
         * samples: each sample belongs to one stall. */
        bool repeat = i > 0 && sv[i - 1]->tid == e->tid && sv[i - 1]->iter_seq == e->iter_seq;
        if ((double)e->duration_ns / 1e6 < keep_ms)
            continue;
        struct m_stall *st = new_stall(p, &cap);
        if (!st)
            goto fail;
        st->tid = e->tid;
        st->iter_seq = e->iter_seq;
        st->start_s = (double)e->start_ns / 1e9;
        st->duration_ms = (double)e->duration_ns / 1e6;
        st->call = model_call_name(e->call);
        if (join_samples(p, st, &e->stack, e->start_ns, idx, repeat ? 0 : nidx) < 0 ||
            join_details(p, st, details, repeat ? 0 : ndetails) < 0)
            goto fail;
    }

    /* A killed process leaves the iteration it was stuck in unfinished; one
     * that exited, the iterations its other threads were in at exit. */
    for (i = 0; i < d->nthreads; i++) {
        const struct st_thread *t = &d->threads[i];
        uint64_t end = d->hdr.last_update_ns, start = t->live_iter_start_ns;

        /* Only a loop thread's: another's is a first iteration in waiting
         * (preload/loop.c), which no loop wait ended. */
        if (!(t->flags & ST_THREAD_LOOP) || start == 0 || end < start ||
            end - start < d->hdr.threshold_ns ||
            (double)(end - start) / 1e6 < keep_ms || has_stall(sv, n, t->tid, t->live_iter_seq))
            continue;
        struct m_stall *st = new_stall(p, &cap);
        if (!st)
            goto fail;
        struct dump_stack none = {0};
        st->tid = t->tid;
        st->iter_seq = t->live_iter_seq;
        st->start_s = (double)start / 1e9;
        st->duration_ms = (double)(end - start) / 1e6;
        st->in_progress = !p->complete;
        /* Its call, if any, has no recorded stack: samples are all we have. */
        if (join_samples(p, st, &none, start, idx, nidx) < 0)
            goto fail;
        st->call = model_call_name(t->live_call);
        st->cpu_ms = st->runq_ms = -1;
    }
    free(sv);
    free(details);
    if (p->nstalls > 1)
        qsort(p->stalls, p->nstalls, sizeof(*p->stalls), cmp_stall);
    return 0;
fail:
    free(sv);
    free(details);
    return -1;
}

/* A slow call its thread made before its first loop wait is recorded both
 * as a slow call and as part of the first iteration (preload/loop.c): the
 * stall has it. */
static bool inside_stall(const struct m_process *p, uint32_t tid, double start_s,
                         double duration_ms)
{
    for (size_t i = 0; i < p->nstalls; i++) {
        const struct m_stall *st = &p->stalls[i];
        if (st->tid == tid && start_s >= st->start_s - 1e-6 &&
            start_s + duration_ms / 1e3 <= st->start_s + st->duration_ms / 1e3 + 1e-6)
            return true;
    }
    return false;
}

static int build_slow_calls(struct m_process *p, const struct dump *d)
{
    size_t i, n = 0;

    for (i = 0; i < d->nevents; i++)
        n += d->events[i].type == ST_REC_SLOW_CALL;
    p->slow_calls = calloc(n ? n : 1, sizeof(*p->slow_calls));
    if (!p->slow_calls)
        return -1;
    for (i = 0; i < d->nevents; i++) {
        const struct dump_event *e = &d->events[i];
        if (e->type != ST_REC_SLOW_CALL ||
            inside_stall(p, e->tid, (double)e->start_ns / 1e9, (double)e->duration_ns / 1e6))
            continue;
        struct m_slow_call *c = &p->slow_calls[p->nslow_calls++];
        c->tid = e->tid;
        c->call = model_call_name(e->call);
        c->start_s = (double)e->start_ns / 1e9;
        c->duration_ms = (double)e->duration_ns / 1e6;
        c->object = e->object;
        if (model_make_stack(p, &e->stack, e->start_ns, &c->stack) < 0)
            return -1;
    }
    return 0;
}

static uint64_t hash_str(uint64_t h, const char *s)
{
    if (!s)
        return h * 31 + 7;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* Agrees with same_site: equal sites hash equal. */
static uint64_t site_hash(const char *call, const struct m_stack *s)
{
    uint64_t h = hash_str(0xcbf29ce484222325ull, call);
    size_t i;

    for (i = 0; i < s->n; i++) {
        const struct sym_frame *f = s->frames[i];
        if (!f->function) {
            h = (h ^ f->address) * 0x100000001b3ull;
            continue;
        }
        h = hash_str(h, f->function);
        h = hash_str(h, f->file);
        h = hash_str(h, f->module);
        h = (h ^ (uint64_t)(unsigned)f->line) * 0x100000001b3ull;
    }
    return h;
}

static int build_sites(struct m_process *p)
{
    size_t i, cap = 16, *table, *order, *rank;
    struct m_site *sorted;

    while (cap < p->nstalls * 2)
        cap *= 2;
    p->sites = calloc(p->nstalls ? p->nstalls : 1, sizeof(*p->sites));
    table = malloc(cap * sizeof(*table));
    if (!p->sites || !table) {
        free(table);
        return -1;
    }
    memset(table, 0xff, cap * sizeof(*table));  /* SIZE_MAX: empty */
    for (i = 0; i < p->nstalls; i++) {
        struct m_stall *st = &p->stalls[i];
        struct m_stack key;
        if (frames_place_key(&st->stack, &key) < 0) {
            free(table);
            return -1;
        }
        /* A loop kept off the CPU is one culprit, wherever it was. */
        if (st->starved)
            key.n = 0;
        const char *call = st->starved ? NULL : st->call;
        size_t j = (size_t)(site_hash(call, &key) ^ st->starved) & (cap - 1);
        while (table[j] != SIZE_MAX && !same_site(call, st->starved, &key, &p->sites[table[j]]))
            j = (j + 1) & (cap - 1);
        if (table[j] == SIZE_MAX) {
            table[j] = p->nsites;
            p->sites[p->nsites].call = call;
            p->sites[p->nsites].stack = st->stack;
            p->sites[p->nsites].key = key;
            p->sites[p->nsites].starved = st->starved;
            p->nsites++;
        } else {
            free(key.frames);
        }
        struct m_site *site = &p->sites[table[j]];
        st->site = table[j];
        site->count++;
        for (size_t k = 0; k < st->ncalls; k++)
            if (cmp_str(st->calls[k].call, site->call) == 0) {
                site->call_count += st->calls[k].count;
                site->call_total_ms += st->calls[k].total_ms;
            }
        site->total_ms += st->duration_ms;
        if (st->duration_ms > site->max_ms)
            site->max_ms = st->duration_ms;
    }
    free(table);

    /* Worst first; the stalls follow their site to its new place. */
    order = calloc(p->nsites ? p->nsites : 1, sizeof(*order));
    rank = calloc(p->nsites ? p->nsites : 1, sizeof(*rank));
    sorted = calloc(p->nsites ? p->nsites : 1, sizeof(*sorted));
    if (!order || !rank || !sorted) {
        free(order);
        free(rank);
        free(sorted);
        return -1;
    }
    for (i = 0; i < p->nsites; i++)
        sorted[i] = p->sites[i];
    for (i = 0; i < p->nsites; i++)
        order[i] = i;
    if (p->nsites > 1)
        qsort_r(order, p->nsites, sizeof(*order), cmp_site_index, p->sites);
    for (i = 0; i < p->nsites; i++) {
        sorted[i] = p->sites[order[i]];
        rank[order[i]] = i;
    }
    for (i = 0; i < p->nstalls; i++)
        p->stalls[i].site = rank[p->stalls[i].site];
    free(p->sites);
    p->sites = sorted;
    free(order);
    free(rank);
    return 0;
}

const char *model_thread_name(const struct m_process *p, uint32_t tid)
{
    size_t i;

    for (i = 0; i < p->nthreads; i++)
        if (p->threads[i].tid == tid)
            return p->threads[i].name;
    return "";
}

void model_fmt_ms(char *buf, size_t len, double ms)
{
    if (ms >= 1000)
        snprintf(buf, len, "%.1f s", ms / 1000);
    else if (ms >= 10)
        snprintf(buf, len, "%.0f ms", ms);
    else if (ms >= 1)
        snprintf(buf, len, "%.1f ms", ms);
    else
        snprintf(buf, len, "%.2f ms", ms);
}

/* redis-server is a link to redis-check-rdb: its frames are named after the
 * name it was run as. Interpreters keep their own (python3 -> python3.11). */
static int name_program_as_run(struct m_process *p)
{
    const char *exe = frames_basename(p->exe), *run = p->argc > 0 ? frames_basename(p->argv[0]) : NULL;

    if (!exe || !run || !run[0] || strcmp(exe, run) == 0 || strncmp(run, exe, strlen(run)) == 0 ||
        strncmp(exe, run, strlen(exe)) == 0)
        return 0;
    return sym_rename_module(p->sym, p->exe, run);
}

struct m_process *model_build(const struct dump *d, const struct model_options *opt)
{
    struct m_process *p = calloc(1, sizeof(*p));
    const struct dump_event **idx = NULL;
    size_t i, nidx = 0;

    if (!p)
        return NULL;
    p->dump = d;
    p->pid = d->proc.pid;
    p->parent_pid = d->proc.parent_pid;
    p->exe = d->proc.exe;
    p->argc = d->argc;
    p->argv = d->argv;
    p->duration_s = (double)d->hdr.last_update_ns / 1e9;
    p->threshold_ms = (double)d->hdr.threshold_ns / 1e6;
    p->complete = (d->hdr.flags & ST_FLAG_COMPLETE) != 0;
    p->dropped = d->dropped;
    p->end_reason = d->hdr.end_reason;
    p->end_signal = d->hdr.end_signal;
    p->sym = sym_new(d->modules, d->nmodules, d->proc.pid, opt ? opt->perf_map_dir : NULL);
    for (size_t i = 0; p->sym && i < d->njitsyms; i++)
        sym_add_jit(p->sym, d->jitsyms[i].start, d->jitsyms[i].size, d->jitsyms[i].name,
                    d->jitsyms[i].map_end);
    for (size_t i = 0; p->sym && i < d->ncode_copies; i++)
        sym_add_code_copy(p->sym, d->code_copies[i].start, d->code_copies[i].size, d->code_copies[i].copy_of);
    if (p->sym && name_program_as_run(p) < 0)
        goto fail;
    p->py = py_namer_new(opt && opt->native_only);
    if (!p->sym || !p->py)
        goto fail;

    idx = calloc(d->nevents ? d->nevents : 1, sizeof(*idx));
    if (!idx)
        goto fail;
    for (i = 0; i < d->nevents; i++)
        if (d->events[i].type == ST_REC_SAMPLE)
            idx[nidx++] = &d->events[i];
    if (nidx > 1)
        qsort(idx, nidx, sizeof(*idx), cmp_iteration);

    if (build_threads(p, d) < 0 ||
        build_stalls(p, d, opt ? opt->threshold_ms : -1, idx, nidx) < 0 ||
        build_slow_calls(p, d) < 0 || build_sites(p) < 0 || model_build_lock_waits(p, d) < 0 ||
        model_build_pools(p, d) < 0 || model_build_queues(p, d) < 0 || model_judge_pools(p, d) < 0 ||
        model_build_locks(p, d) < 0 ||
        model_build_diagnosis(p) < 0)
        goto fail;
    if (py_namer_unsupported(p->py))
        p->python_note = "Python frames unavailable: unsupported CPython version";
    free(idx);
    return p;
fail:
    free(idx);
    model_free(p);
    return NULL;
}

void model_free(struct m_process *p)
{
    size_t i;

    if (!p)
        return;
    for (i = 0; i < p->nstalls; i++)
        free_stall(&p->stalls[i]);
    free(p->stalls);
    for (i = 0; i < p->nslow_calls; i++)
        free(p->slow_calls[i].stack.frames);
    free(p->slow_calls);
    for (i = 0; i < p->nsites; i++)
        free(p->sites[i].key.frames);
    free(p->sites);
    model_free_queues(p);
    model_free_pools(p);
    model_free_locks(p);
    for (i = 0; i < p->ndiagnosis; i++)
        free(p->diagnosis[i].summary);
    free(p->diagnosis);
    free(p->threads);
    sym_free(p->sym);
    py_namer_free(p->py);
    free(p);
}

/* model_stalls.c - the stalls step of model_build(): each stall record, or an
 * iteration a killed process left open, with its samples, calls and CPU. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frames.h"
#include "grow.h"
#include "model_build.h"
#include "model_helpers.h"

static bool same_raw_stack(const struct dump_stack *a, const struct dump_stack *b)
{
    return a->nframes == b->nframes &&
           (a->nframes == 0 || memcmp(a->frames, b->frames, a->nframes * sizeof(uint64_t)) == 0);
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
            count += model_same_place(&keys[a], &keys[b]);
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

static struct m_stall *new_stall(struct m_process *p, size_t *cap)
{
    if (GROW(p->stalls, *cap, p->nstalls + 1, 64) < 0)
        return NULL;
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

int model_build_stalls(struct m_process *p, const struct dump *d, double threshold_ms)
{
    const struct dump_event **idx = calloc(d->nevents ? d->nevents : 1, sizeof(*idx));
    size_t i, nidx = 0;
    int rc;

    if (!idx)
        return -1;
    for (i = 0; i < d->nevents; i++)
        if (d->events[i].type == ST_REC_SAMPLE)
            idx[nidx++] = &d->events[i];
    if (nidx > 1)
        qsort(idx, nidx, sizeof(*idx), cmp_iteration);
    rc = build_stalls(p, d, threshold_ms, idx, nidx);
    free(idx);
    return rc;
}

void model_free_stalls(struct m_process *p)
{
    for (size_t i = 0; i < p->nstalls; i++)
        free_stall(&p->stalls[i]);
    free(p->stalls);
}

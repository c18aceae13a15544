/* report_json.c - `report --format json`: the stalltrace-report document of
 * SPEC.md, one entry in "processes" per dump. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"
#include "report_util.h"

/* slow_calls lists the longest ones only; slow_calls_total counts them all. */
#define MAX_SLOW_CALLS 200

/* Keep reports readable: durations to the microsecond, ratios to 1e-4. */
static json_t *real(double v, double scale)
{
    if (!isfinite(v))
        v = 0;
    return json_real(round(v * scale) / scale);
}

/* Dumps are untrusted and names need not be UTF-8: jansson refuses those,
 * so bytes outside ASCII are shown as '?' rather than losing the field. */
static json_t *str(const char *s)
{
    json_t *j = json_string(s);
    char *copy, *c;

    if (j)
        return j;
    copy = strdup(s);
    if (!copy)
        return json_null();
    for (c = copy; *c; c++)
        if ((unsigned char)*c >= 0x80)
            *c = '?';
    j = json_string(copy);
    free(copy);
    return j ? j : json_null();
}

static json_t *str_or_null(const char *s)
{
    return s ? str(s) : json_null();
}

static json_t *frame_json(const struct sym_frame *f)
{
    char addr[24];
    json_t *o = json_object();

    snprintf(addr, sizeof(addr), "0x%llx", (unsigned long long)f->address);
    json_object_set_new(o, "function", str_or_null(f->function));
    json_object_set_new(o, "module", str_or_null(f->module));
    json_object_set_new(o, "file", str_or_null(f->file));
    json_object_set_new(o, "line", f->line > 0 ? json_integer(f->line) : json_null());
    json_object_set_new(o, "kind", json_string(f->kind));
    json_object_set_new(o, "address", json_string(addr));
    if (f->inlined)
        json_object_set_new(o, "inlined", json_true());
    if (f->note)
        json_object_set_new(o, "note", str(f->note));
    return o;
}

static json_t *stack_json(const struct m_stack *s)
{
    json_t *a = json_array();
    size_t i;

    for (i = 0; i < s->n; i++)
        json_array_append_new(a, frame_json(s->frames[i]));
    return a;
}

static json_t *thread_json(const struct m_thread *t)
{
    json_t *o = json_object();

    json_object_set_new(o, "tid", json_integer(t->tid));
    json_object_set_new(o, "name", str(t->name));
    /* A loop thread is never a pool's worker (pools.c leaves them out). */
    json_object_set_new(o, "role", json_string(t->is_loop ? "loop" : t->pool >= 0 ? "worker" : "other"));
    json_object_set_new(o, "pool", t->pool >= 0 ? json_integer(t->pool) : json_null());
    if (t->is_loop) {
        json_t *l = json_object();
        json_object_set_new(l, "iterations", json_integer((json_int_t)t->loop.iterations));
        json_object_set_new(l, "busy_s", real(t->loop.busy_s, 1e6));
        json_object_set_new(l, "utilization", real(t->loop.utilization, 1e4));
        json_object_set_new(l, "p50_ms", real(t->loop.p50_ms, 1e3));
        json_object_set_new(l, "p99_ms", real(t->loop.p99_ms, 1e3));
        json_object_set_new(l, "max_ms", real(t->loop.max_ms, 1e3));
        json_object_set_new(l, "stalls", json_integer((json_int_t)t->loop.stalls));
        json_object_set_new(o, "loop", l);
    } else {
        json_object_set_new(o, "loop", json_null());
    }
    return o;
}

/* SPEC.md (Additions): { tid, thread, held_ms, stack }; the stack is empty
 * when the holder could not sample itself. An rwlock readers held: tid 0
 * and readers, their count when the wait began (they leave no tid). */
static json_t *holder_json(const struct m_holder *h)
{
    json_t *o = json_object();

    json_object_set_new(o, "tid", json_integer(h->tid));
    json_object_set_new(o, "thread", json_string(h->thread));
    if (h->tid == 0)
        json_object_set_new(o, "readers", json_integer(h->readers));
    json_object_set_new(o, "held_ms", real(h->held_ms, 1e3));
    json_object_set_new(o, "stack", stack_json(&h->stack));
    return o;
}

static json_t *stall_json(const struct m_process *p, const struct m_stall *st)
{
    json_t *o = json_object(), *samples = json_array();
    size_t i;

    json_object_set_new(o, "tid", json_integer(st->tid));
    json_object_set_new(o, "start_s", real(st->start_s, 1e6));
    json_object_set_new(o, "duration_ms", real(st->duration_ms, 1e3));
    json_object_set_new(o, "call", str_or_null(st->call));
    if (st->in_progress)
        json_object_set_new(o, "in_progress", json_true());
    json_object_set_new(o, "stack", stack_json(&st->stack));
    const char *note = stall_stack_note(p, st->call, &st->stack);
    if (note)
        json_object_set_new(o, "stack_note", json_string(note));
    for (i = 0; i < st->nsamples; i++) {
        json_t *s = json_object();
        json_object_set_new(s, "at_ms", real(st->samples[i].at_ms, 1e3));
        json_object_set_new(s, "stack", stack_json(&st->samples[i].stack));
        json_array_append_new(samples, s);
    }
    json_object_set_new(o, "samples", samples);
    json_t *calls = json_array();
    for (i = 0; i < st->ncalls; i++) {
        const struct m_stall_call *c = &st->calls[i];
        json_t *j = json_object();
        json_object_set_new(j, "call", str(c->call));
        json_object_set_new(j, "count", json_integer(c->count));
        json_object_set_new(j, "total_ms", real(c->total_ms, 1e3));
        json_object_set_new(j, "max_ms", real(c->max_ms, 1e3));
        json_object_set_new(j, "stack", stack_json(&c->stack));
        json_array_append_new(calls, j);
    }
    json_object_set_new(o, "calls", calls);
    json_object_set_new(o, "cpu_ms", st->cpu_ms >= 0 ? real(st->cpu_ms, 1e3) : json_null());
    json_object_set_new(o, "runq_ms", st->runq_ms >= 0 ? real(st->runq_ms, 1e3) : json_null());
    const struct m_holder *h = model_stall_blocked_by(p, st);
    if (h)
        json_object_set_new(o, "blocked_by", holder_json(h));
    return o;
}

static json_t *slow_call_json(const struct m_slow_call *c)
{
    json_t *o = json_object();
    char obj[24];

    snprintf(obj, sizeof(obj), "0x%llx", (unsigned long long)c->object);
    json_object_set_new(o, "tid", json_integer(c->tid));
    json_object_set_new(o, "start_s", real(c->start_s, 1e6));
    json_object_set_new(o, "duration_ms", real(c->duration_ms, 1e3));
    json_object_set_new(o, "call", str_or_null(c->call));
    json_object_set_new(o, "object", json_string(obj));
    json_object_set_new(o, "stack", stack_json(&c->stack));
    return o;
}

static json_t *hex(uint64_t v)
{
    char buf[24];

    snprintf(buf, sizeof(buf), "0x%llx", (unsigned long long)v);
    return json_string(buf);
}

/* {exact, count, p50, p99, max, total}, or null when no task was seen. */
static json_t *dist_json(const struct m_dist *d)
{
    if (!d->known)
        return json_null();
    json_t *o = json_object();
    json_object_set_new(o, "exact", json_boolean(d->exact));
    json_object_set_new(o, "count", json_integer((json_int_t)d->count));
    json_object_set_new(o, "p50", real(d->p50_ms, 1e3));
    json_object_set_new(o, "p99", real(d->p99_ms, 1e3));
    json_object_set_new(o, "max", real(d->max_ms, 1e3));
    json_object_set_new(o, "total", real(d->total_ms, 1e3));
    return o;
}

#define LONG_WAITS_MAX 200         /* per queue, the longest ones */

static int cmp_wait_desc(const void *a, const void *b)
{
    const struct m_task_wait *x = *(const struct m_task_wait *const *)a;
    const struct m_task_wait *y = *(const struct m_task_wait *const *)b;
    return (x->wait_ms < y->wait_ms) - (x->wait_ms > y->wait_ms);
}

static json_t *task_wait_json(const struct m_task_wait *w)
{
    json_t *o = json_object();
    char id[24];

    snprintf(id, sizeof(id), "0x%llx", (unsigned long long)w->task_id);
    json_object_set_new(o, "task_id", json_string(id));
    json_object_set_new(o, "submit_s", real(w->submit_s, 1e6));
    json_object_set_new(o, "start_s", real(w->start_s, 1e6));
    json_object_set_new(o, "wait_ms", real(w->wait_ms, 1e3));
    json_object_set_new(o, "submitter_tid", json_integer(w->submit_tid));
    json_object_set_new(o, "worker_tid", json_integer(w->worker_tid));
    json_object_set_new(o, "stack_kind", str_or_null(w->stack_kind));
    json_object_set_new(o, "stack", stack_json(&w->stack));
    return o;
}

static json_t *queue_json(const struct m_queue *q)
{
    json_t *o = json_object(), *a = json_array();
    size_t i, n = q->nlong < LONG_WAITS_MAX ? q->nlong : LONG_WAITS_MAX;

    json_object_set_new(o, "name", str(q->name));
    json_object_set_new(o, "pool", q->pool >= 0 ? json_integer(q->pool) : json_null());
    json_object_set_new(o, "submitted", json_integer((json_int_t)q->submitted));
    json_object_set_new(o, "started", json_integer((json_int_t)q->started));
    json_object_set_new(o, "finished", json_integer((json_int_t)q->finished));
    json_object_set_new(o, "discarded", json_integer((json_int_t)q->discarded));
    json_object_set_new(o, "unmatched", json_integer((json_int_t)q->unmatched));
    json_object_set_new(o, "waiting", json_integer((json_int_t)q->waiting));
    json_object_set_new(o, "running", json_integer((json_int_t)q->running));
    json_object_set_new(o, "peak_running", json_integer(q->peak_running));
    for (i = 0; i < q->nworkers; i++)
        json_array_append_new(a, json_integer(q->workers[i]));
    json_object_set_new(o, "worker_tids", a);
    json_object_set_new(o, "queue_wait_ms", dist_json(&q->wait));
    json_object_set_new(o, "run_ms", dist_json(&q->run));
    /* The longest waits (>= threshold), longest first, each with the
     * submitter's stack. */
    json_object_set_new(o, "long_waits_total", json_integer((json_int_t)q->long_waits));
    const struct m_task_wait **by = calloc(q->nlong ? q->nlong : 1, sizeof(*by));
    a = json_array();
    if (by) {
        for (i = 0; i < q->nlong; i++)
            by[i] = &q->longs[i];
        qsort(by, q->nlong, sizeof(*by), cmp_wait_desc);
        for (i = 0; i < n; i++)
            json_array_append_new(a, task_wait_json(by[i]));
        free(by);
    }
    json_object_set_new(o, "long_waits", a);
    return o;
}

static json_t *pool_json(const struct m_process *p, const struct m_pool *pool)
{
    json_t *o = json_object(), *a;
    size_t i;

    json_object_set_new(o, "id", json_integer(pool->id));
    json_object_set_new(o, "threads", json_integer((json_int_t)pool->nthreads));
    a = json_array();
    for (i = 0; i < pool->nthreads; i++)
        json_array_append_new(a, json_integer(pool->tids[i]));
    json_object_set_new(o, "tids", a);
    json_object_set_new(o, "object", pool->nobjects ? hex(pool->objects[0]) : json_null());
    if (pool->nobjects > 1) {
        a = json_array();
        for (i = 0; i < pool->nobjects; i++)
            json_array_append_new(a, hex(pool->objects[i]));
        json_object_set_new(o, "objects", a);
    }
    json_object_set_new(o, "kind", str_or_null(pool->kind));
    json_object_set_new(o, "max_threads", pool->max_threads ? json_integer(pool->max_threads) : json_null());
    json_object_set_new(o, "object_kind", json_string(pool->object_kind));
    json_object_set_new(o, "saturation_basis", str_or_null(pool->saturation_basis));
    json_object_set_new(o, "busy_ratio", real(pool->busy_ratio, 1e4));
    json_object_set_new(o, "saturated_s", real(pool->saturated_s, 1e6));
    json_object_set_new(o, "longest_saturation_ms", real(pool->longest_ms, 1e3));
    a = json_array();
    for (i = 0; i < pool->nsaturations; i++) {
        const struct m_span *s = &pool->saturations[i];
        json_t *x = json_object();
        json_object_set_new(x, "start_s", real(s->start_s, 1e6));
        json_object_set_new(x, "duration_ms", real(s->duration_ms, 1e3));
        json_object_set_new(x, "members", json_integer(s->members));
        if (s->retroactive)
            json_object_set_new(x, "retroactive", json_true());
        if (s->in_progress)
            json_object_set_new(x, "in_progress", json_true());
        json_array_append_new(a, x);
    }
    json_object_set_new(o, "saturations", a);
    a = json_array();
    for (i = 0; i < pool->nbusy; i++) {
        const struct m_busy *b = &pool->busy_in[i];
        json_t *x = json_object();
        json_object_set_new(x, "call", str_or_null(b->call));
        json_object_set_new(x, "count", json_integer((json_int_t)b->count));
        json_object_set_new(x, "total_ms", real(b->total_ms, 1e3));
        json_object_set_new(x, "max_ms", real(b->max_ms, 1e3));
        json_object_set_new(x, "saturated_ms", real(b->saturated_ms, 1e3));
        json_object_set_new(x, "stack", stack_json(&b->stack));
        json_array_append_new(a, x);
    }
    json_object_set_new(o, "busy_in", a);
    /* Shares of the worker time while saturated (of all busy time when the
     * pool never was): in busy_in[0], and in any wrapped call. */
    json_object_set_new(o, "busy_in_top_share", real(pool->top_share, 1e4));
    json_object_set_new(o, "busy_in_wrapped_share", real(pool->wrapped_share, 1e4));
    /* Known only from the annotation API (or the Python hook): null for
     * libuv and unannotated pools, whose submissions are not visible. */
    a = json_array();
    for (i = 0; i < pool->nqueues; i++)
        json_array_append_new(a, str(p->queues[pool->queues[i]].name));
    json_object_set_new(o, "queues", a);
    json_object_set_new(o, "queue_wait_ms", dist_json(&pool->queue_wait));
    json_object_set_new(o, "run_ms", dist_json(&pool->run));
    /* Who fed it while saturated: empty when no submission was seen to
     * queue (never an inferred one). */
    a = json_array();
    for (i = 0; i < pool->nfed_by; i++) {
        const struct m_feeder *f = &pool->fed_by[i];
        json_t *x = json_object();
        json_object_set_new(x, "where", f->where[0] ? str(f->where) : json_null());
        json_object_set_new(x, "count", json_integer((json_int_t)f->count));
        json_object_set_new(x, "tid", json_integer(f->tid));
        json_object_set_new(x, "thread", str(f->thread ? f->thread : ""));
        json_object_set_new(x, "call", str_or_null(f->call));
        json_object_set_new(x, "stack", stack_json(&f->stack));
        json_array_append_new(a, x);
    }
    json_object_set_new(o, "fed_by", a);
    json_object_set_new(o, "fed_total", json_integer((json_int_t)pool->fed_total));
    return o;
}

/* At most this many holders per lock, the longest held. */
#define LOCK_HOLDERS_MAX 16u

static int cmp_held(const void *a, const void *b)
{
    const struct m_holder *x = *(const struct m_holder *const *)a, *y = *(const struct m_holder *const *)b;
    return x->held_ms > y->held_ms ? -1 : x->held_ms < y->held_ms;
}

static json_t *lock_holders_json(const struct m_process *p, const struct m_lock *l)
{
    const struct m_holder **hs = calloc(p->nholders + 1, sizeof(*hs));
    size_t n = 0;

    if (!hs)
        return NULL;
    for (size_t i = 0; i < p->nholders; i++)
        if (p->holders[i].object == l->object)
            hs[n++] = &p->holders[i];
    qsort(hs, n, sizeof(*hs), cmp_held);
    json_t *a = n ? json_array() : NULL;
    for (size_t i = 0; i < n && i < LOCK_HOLDERS_MAX; i++)
        json_array_append_new(a, holder_json(hs[i]));
    free(hs);
    return a;
}

static json_t *lock_json(const struct m_process *p, const struct m_lock *l)
{
    json_t *o = json_object();

    json_object_set_new(o, "object", hex(l->object));
    json_object_set_new(o, "symbol", str_or_null(l->symbol));
    json_object_set_new(o, "label", str_or_null(l->label));
    json_object_set_new(o, "kind", json_string(l->kind));
    json_object_set_new(o, "contentions", json_integer((json_int_t)l->contentions));
    json_object_set_new(o, "long_waits", json_integer((json_int_t)l->long_waits));
    json_object_set_new(o, "waiters", json_integer((json_int_t)l->waiters));
    json_object_set_new(o, "timeouts", json_integer((json_int_t)l->timeouts));
    json_object_set_new(o, "wait_total_ms", real(l->wait_total_ms, 1e3));
    json_object_set_new(o, "wait_max_ms", real(l->wait_max_ms, 1e3));
    json_object_set_new(o, "call", str_or_null(l->call));
    json_object_set_new(o, "stack", stack_json(&l->stack));
    json_object_set_new(o, "contended_ms", real(l->contended_ms, 1e3));
    json_object_set_new(o, "wait_share", real(l->wait_share, 1e4));
    json_object_set_new(o, "internal", str_or_null(l->internal));
    json_object_set_new(o, "culprit", json_boolean(l->culprit));
    json_object_set_new(o, "idle", json_boolean(l->idle));
    json_t *holders = lock_holders_json(p, l);
    if (holders)
        json_object_set_new(o, "holders", holders);
    return o;
}

static json_t *process_json(const struct m_process *p)
{
    json_t *o = json_object(), *a;
    size_t i;
    int k;

    json_object_set_new(o, "pid", json_integer(p->pid));
    json_object_set_new(o, "parent_pid", json_integer(p->parent_pid));
    json_object_set_new(o, "exe", str(p->exe));
    a = json_array();
    for (k = 0; k < p->argc; k++)
        json_array_append_new(a, str(p->argv[k]));
    json_object_set_new(o, "argv", a);
    json_object_set_new(o, "duration_s", real(p->duration_s, 1e6));
    json_object_set_new(o, "complete", json_boolean(p->complete));
    json_object_set_new(o, "attached", json_boolean(p->attached));
    json_object_set_new(o, "dropped_events", json_integer((json_int_t)p->dropped));
    json_object_set_new(o, "threshold_ms", real(p->threshold_ms, 1e3));

    a = json_array();
    for (i = 0; i < p->nthreads; i++)
        json_array_append_new(a, thread_json(&p->threads[i]));
    json_object_set_new(o, "threads", a);
    a = json_array();
    for (i = 0; i < p->nstalls; i++)
        json_array_append_new(a, stall_json(p, &p->stalls[i]));
    json_object_set_new(o, "stalls", a);
    const struct m_slow_call **slow;
    size_t nslow = longest_slow_calls(p, MAX_SLOW_CALLS, &slow);
    a = json_array();
    for (i = 0; nslow != (size_t)-1 && i < nslow; i++)
        json_array_append_new(a, slow_call_json(slow[i]));
    free(slow);
    json_object_set_new(o, "slow_calls", a);
    json_object_set_new(o, "slow_calls_total", json_integer((json_int_t)p->nslow_calls));
    a = json_array();
    for (i = 0; i < p->npools; i++)
        json_array_append_new(a, pool_json(p, &p->pools[i]));
    json_object_set_new(o, "pools", a);
    a = json_array();
    for (i = 0; i < p->nqueues; i++)
        json_array_append_new(a, queue_json(&p->queues[i]));
    json_object_set_new(o, "queues", a);
    a = json_array();
    for (i = 0; i < p->nlocks; i++)
        json_array_append_new(a, lock_json(p, &p->locks[i]));
    json_object_set_new(o, "locks", a);
    a = json_array();
    for (i = 0; i < p->ndiagnosis; i++) {
        json_t *d = json_object();
        json_object_set_new(d, "culprit", json_string(p->diagnosis[i].culprit));
        json_object_set_new(d, "summary", str(p->diagnosis[i].summary));
        json_array_append_new(a, d);
    }
    json_object_set_new(o, "diagnosis", a);
    /* What the stacks could not show, said once per process. */
    a = json_array();
    if (p->python_note)
        json_array_append_new(a, json_string(p->python_note));
    json_object_set_new(o, "notes", a);
    return o;
}

int report_json(FILE *out, struct m_process **procs, size_t n, const struct report_options *opt)
{
    (void)opt;
    json_t *doc = json_object(), *a = json_array();
    size_t i;
    int rc;

    json_object_set_new(doc, "format", json_string("stalltrace-report"));
    json_object_set_new(doc, "version", json_integer(1));
    for (i = 0; i < n; i++)
        json_array_append_new(a, process_json(procs[i]));
    json_object_set_new(doc, "processes", a);
    rc = json_dumpf(doc, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
    fputc('\n', out);
    json_decref(doc);
    return rc;
}

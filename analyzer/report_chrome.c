/* report_chrome.c - `report --format chrome`: Trace Event Format JSON for
 * Perfetto and chrome://tracing: one track per thread, stalls as slices. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"
#include "report_util.h"

#define STACK_FRAMES 16            /* frames kept in a slice's args */
#define SAMPLE_FRAMES 8

static json_t *jstr(const char *s)
{
    char buf[1024];

    snprintf(buf, sizeof(buf), "%s", s ? s : "");
    sanitize_ascii(buf);
    return json_string(buf);
}

/* Microseconds, rounded to the nanosecond that the dump has. */
static json_t *usec(double us)
{
    if (!isfinite(us) || us < 0)
        us = 0;
    return json_real(round(us * 1000) / 1000);
}

static json_t *stack_args(const struct m_stack *s, size_t limit)
{
    json_t *a = json_array();
    char buf[768];
    size_t i;

    for (i = 0; i < s->n && i < limit; i++) {
        frames_describe(s->frames[i], buf, sizeof(buf));
        json_array_append_new(a, jstr(buf));
    }
    if (s->n > limit)
        json_array_append_new(a, json_string("..."));
    return a;
}

static json_t *event(const char *ph, const char *name, const char *cat, int32_t pid, uint32_t tid,
                     double ts_us)
{
    json_t *e = json_object();

    json_object_set_new(e, "name", jstr(name));
    if (cat)
        json_object_set_new(e, "cat", json_string(cat));
    json_object_set_new(e, "ph", json_string(ph));
    json_object_set_new(e, "ts", usec(ts_us));
    json_object_set_new(e, "pid", json_integer(pid));
    json_object_set_new(e, "tid", json_integer(tid));
    return e;
}

static void metadata(json_t *events, const struct m_process *p)
{
    char name[1200] = "", buf[64];
    size_t i, used = 0;
    int k;

    for (k = 0; k < p->argc && used + 1 < sizeof(name) - 32; k++)
        used += (size_t)snprintf(name + used, sizeof(name) - 32 - used, "%s%s", k ? " " : "", p->argv[k]);
    snprintf(name + strlen(name), sizeof(name) - strlen(name), "%s(pid %d)", name[0] ? " " : "", p->pid);
    json_t *e = event("M", "process_name", NULL, p->pid, (uint32_t)p->pid, 0);
    json_object_set_new(e, "args", json_pack("{s:o}", "name", jstr(name)));
    json_array_append_new(events, e);

    for (i = 0; i < p->nthreads; i++) {
        const struct m_thread *t = &p->threads[i];
        snprintf(buf, sizeof(buf), "%s%s", t->name[0] ? t->name : "thread",
                 t->is_loop ? " (event loop)" : "");
        e = event("M", "thread_name", NULL, p->pid, t->tid, 0);
        json_object_set_new(e, "args", json_pack("{s:o}", "name", jstr(buf)));
        json_array_append_new(events, e);
        /* Loop threads on top: they are what the trace is about. */
        e = event("M", "thread_sort_index", NULL, p->pid, t->tid, 0);
        json_object_set_new(e, "args", json_pack("{s:i}", "sort_index", t->is_loop ? 0 : 1 + (int)i));
        json_array_append_new(events, e);
    }
}

static void stall_events(json_t *events, const struct m_process *p, double origin_us)
{
    char name[96], where[768];
    size_t i, j;

    for (i = 0; i < p->nstalls; i++) {
        const struct m_stall *st = &p->stalls[i];
        double ts = origin_us + st->start_s * 1e6;

        snprintf(name, sizeof(name), "stall: %s", st->call ? st->call : "CPU-bound");
        stack_top_describe(&st->stack, where, sizeof(where));
        json_t *e = event("X", name, "stall", p->pid, st->tid, ts);
        json_object_set_new(e, "dur", usec(st->duration_ms * 1e3));
        json_object_set_new(e, "cname", json_string("terrible"));
        json_t *args = json_object();
        json_object_set_new(args, "duration_ms", json_real(round(st->duration_ms * 1e3) / 1e3));
        json_object_set_new(args, "call", st->call ? json_string(st->call) : json_null());
        json_object_set_new(args, "where", jstr(where));
        json_object_set_new(args, "site", json_integer((json_int_t)st->site + 1));
        json_object_set_new(args, "stack", stack_args(&st->stack, STACK_FRAMES));
        if (st->in_progress)
            json_object_set_new(args, "in_progress", json_true());
        json_object_set_new(e, "args", args);
        json_array_append_new(events, e);

        for (j = 0; j < st->nsamples; j++) {
            const struct m_sample *s = &st->samples[j];
            json_t *x = event("i", "sample", "sample", p->pid, st->tid, ts + s->at_ms * 1e3);
            json_object_set_new(x, "s", json_string("t"));
            json_object_set_new(x, "args", json_pack("{s:o}", "stack", stack_args(&s->stack, SAMPLE_FRAMES)));
            json_array_append_new(events, x);
        }
    }
}

/* Blocking calls past the threshold on threads outside loop iterations
 * (pool workers, plain threads): slices on their own tracks. */
static void slow_call_events(json_t *events, const struct m_process *p, double origin_us)
{
    char where[768];
    const struct m_slow_call **slow;
    size_t i, n = longest_slow_calls(p, 1000, &slow);

    for (i = 0; n != (size_t)-1 && i < n; i++) {
        const struct m_slow_call *c = slow[i];
        json_t *e = event("X", c->call ? c->call : "call", "slow_call", p->pid, c->tid,
                          origin_us + c->start_s * 1e6);
        stack_top_describe(&c->stack, where, sizeof(where));
        json_object_set_new(e, "dur", usec(c->duration_ms * 1e3));
        json_object_set_new(e, "args", json_pack("{s:f,s:o,s:o}", "duration_ms", c->duration_ms, "where",
                                                 jstr(where), "stack", stack_args(&c->stack, STACK_FRAMES)));
        json_array_append_new(events, e);
    }
    free(slow);
}

/* A lock's name for people: its label (GIL), data symbol, or address. */
static void lock_name(const struct m_process *p, uint64_t object, char *buf, size_t len)
{
    for (size_t i = 0; i < p->nlocks; i++)
        if (p->locks[i].object == object) {
            if (p->locks[i].label || p->locks[i].symbol) {
                snprintf(buf, len, "%s", p->locks[i].label ? p->locks[i].label : p->locks[i].symbol);
                return;
            }
            break;
        }
    snprintf(buf, len, "0x%llx", (unsigned long long)object);
}

static void lock_wait_events(json_t *events, const struct m_process *p, double origin_us)
{
    char name[160], lock[128], where[768];

    for (size_t i = 0; i < p->nlock_waits; i++) {
        const struct m_lock_wait *w = &p->lock_waits[i];
        lock_name(p, w->object, lock, sizeof(lock));
        snprintf(name, sizeof(name), "lock wait: %s", lock);
        stack_top_describe(&w->stack, where, sizeof(where));
        json_t *e = event("X", name, "lock_wait", p->pid, w->tid, origin_us + w->start_s * 1e6);
        json_object_set_new(e, "dur", usec(w->duration_ms * 1e3));
        json_object_set_new(e, "args", json_pack("{s:f,s:o,s:i,s:o,s:o}", "duration_ms", w->duration_ms, "call",
                                                 jstr(w->call), "retries", (int)w->retries, "where", jstr(where),
                                                 "stack", stack_args(&w->stack, STACK_FRAMES)));
        json_array_append_new(events, e);
    }
}

/* Saturation spans of each pool on a track of its own (a pseudo-thread:
 * the trace format has no other kind of track that every viewer shows). */
#define POOL_TRACK_TID 0x7f000000u
static void pool_events(json_t *events, const struct m_process *p, double origin_us)
{
    char name[96];

    for (size_t i = 0; i < p->npools; i++) {
        const struct m_pool *pool = &p->pools[i];
        uint32_t tid = POOL_TRACK_TID + (uint32_t)pool->id;
        snprintf(name, sizeof(name), "pool %d (%zu threads): saturation", pool->id, pool->nthreads);
        json_t *e = event("M", "thread_name", NULL, p->pid, tid, 0);
        json_object_set_new(e, "args", json_pack("{s:s}", "name", name));
        json_array_append_new(events, e);
        for (size_t j = 0; j < pool->nsaturations; j++) {
            const struct m_span *sp = &pool->saturations[j];
            e = event("X", "pool saturated", "saturation", p->pid, tid, origin_us + sp->start_s * 1e6);
            json_object_set_new(e, "dur", usec(sp->duration_ms * 1e3));
            json_object_set_new(e, "args", json_pack("{s:f,s:i,s:b}", "duration_ms", sp->duration_ms, "workers",
                                                     (int)sp->members, "in_progress", sp->in_progress));
            json_array_append_new(events, e);
        }
    }
}

int report_chrome(FILE *out, struct m_process **procs, size_t n, const struct report_options *opt)
{
    (void)opt;
    json_t *doc = json_object(), *events = json_array();
    uint64_t first = UINT64_MAX;
    size_t i;
    int rc;

    /* Dumps of several processes share one time axis: the wall clock at
     * which each recording started. */
    for (i = 0; i < n; i++)
        if (procs[i]->dump && procs[i]->dump->hdr.start_real_ns < first)
            first = procs[i]->dump->hdr.start_real_ns;
    for (i = 0; i < n; i++) {
        const struct m_process *p = procs[i];
        double origin = p->dump ? (double)(p->dump->hdr.start_real_ns - first) / 1e3 : 0;
        metadata(events, p);
        stall_events(events, p, origin);
        slow_call_events(events, p, origin);
        lock_wait_events(events, p, origin);
        pool_events(events, p, origin);
    }
    json_object_set_new(doc, "traceEvents", events);
    json_object_set_new(doc, "displayTimeUnit", json_string("ms"));
    json_object_set_new(doc, "otherData", json_pack("{s:s,s:s}", "producer", "stalltrace " STALLTRACE_VERSION,
                                                    "format", "stalltrace-chrome-trace"));
    rc = json_dumpf(doc, out, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    fputc('\n', out);
    json_decref(doc);
    return rc || ferror(out) ? -1 : 0;
}

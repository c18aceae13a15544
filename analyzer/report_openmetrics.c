/* report_openmetrics.c - `report --format openmetrics`: the figures of each
 * dump as Prometheus text exposition (what promtool checks), ending "# EOF". */
#include <math.h>
#include <string.h>

#include "report.h"
#include "report_util.h"

/* Octave bounds of the recorder's log-linear histogram (2^k us): exact
 * cumulative counts, and the same `le` set for every thread and dump, so
 * histogram_quantile() can aggregate across them. */
#define LE_FIRST_OCTAVE 3u         /* 8 us, the first multi-us bucket floor */

struct labels {
    char text[256];                /* pid="1",tid="1",thread="python3" */
};

/* A label value with \\, \" and newline escaped (and non-ASCII as '?'). */
static void label_value(char *dst, size_t len, const char *src)
{
    char clean[64];
    size_t used = 0;

    snprintf(clean, sizeof(clean), "%s", src ? src : "");
    sanitize_ascii(clean);
    for (const char *c = clean; *c && used + 3 < len; c++) {
        if (*c == '\\' || *c == '"')
            dst[used++] = '\\';
        dst[used++] = *c;
    }
    dst[used] = '\0';
}

static void thread_labels(struct labels *l, const struct m_process *p, const struct m_thread *t)
{
    char name[128];

    label_value(name, sizeof(name), t->name);
    snprintf(l->text, sizeof(l->text), "pid=\"%d\",tid=\"%u\",thread=\"%s\"", p->pid, t->tid, name);
}

static void family(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Values in the shortest exact-enough form Prometheus parses. */
static void sample(FILE *out, const char *name, const char *labels, double v)
{
    if (!isfinite(v))
        v = 0;
    fprintf(out, "%s{%s} %.9g\n", name, labels, v);
}

static void busy_histogram(FILE *out, const struct m_process *p, const struct m_thread *t,
                           const char *labels)
{
    const struct st_thread *raw = dump_thread_by_tid(p, t->tid);
    uint64_t cum = 0, total = 0;
    unsigned b = 0, octave;

    if (!raw)
        return;
    for (unsigned i = 0; i < ST_HIST_BUCKETS; i++)
        total += raw->busy_hist[i];
    for (octave = LE_FIRST_OCTAVE; octave <= ST_HIST_OCTAVES + ST_HIST_SUB_BITS; octave++) {
        uint64_t bound_us = (uint64_t)1 << octave;
        /* Buckets whose floor is below the bound lie wholly below it. */
        for (; b < ST_HIST_BUCKETS && st_hist_bucket_floor_ns(b) < bound_us * ST_HIST_UNIT_NS; b++)
            cum += raw->busy_hist[b];
        fprintf(out, "stalltrace_loop_busy_seconds_bucket{%s,le=\"%.10g\"} %llu\n", labels,
                (double)bound_us / 1e6, (unsigned long long)cum);
    }
    fprintf(out, "stalltrace_loop_busy_seconds_bucket{%s,le=\"+Inf\"} %llu\n", labels,
            (unsigned long long)total);
    sample(out, "stalltrace_loop_busy_seconds_sum", labels, (double)raw->busy_ns / 1e9);
    fprintf(out, "stalltrace_loop_busy_seconds_count{%s} %llu\n", labels, (unsigned long long)total);
}

/* Each family is written whole (all dumps, all threads) before the next:
 * the exposition format wants a family's samples together. */
static void loop_families(FILE *out, struct m_process **procs, size_t n)
{
    static const struct {
        const char *name, *type, *help;
    } fams[] = {
        {"stalltrace_loop_iterations_total", "counter", "Event-loop iterations completed."},
        {"stalltrace_loop_busy_seconds", "histogram", "Busy time of each event-loop iteration."},
        {"stalltrace_loop_idle_seconds_total", "counter", "Time the event loop spent waiting for events."},
        {"stalltrace_loop_utilization_ratio", "gauge", "Busy time over busy plus idle time of the event loop."},
        {"stalltrace_stalls_total", "counter", "Event-loop iterations that ran past the stall threshold."},
        {"stalltrace_stall_seconds_total", "counter", "Time the event loop was stalled."},
    };
    struct labels l;
    size_t f, i, j, k;

    for (f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
        family(out, fams[f].name, fams[f].type, fams[f].help);
        for (i = 0; i < n; i++) {
            const struct m_process *p = procs[i];
            for (j = 0; j < p->nthreads; j++) {
                const struct m_thread *t = &p->threads[j];
                const struct st_thread *raw = dump_thread_by_tid(p, t->tid);
                double count = 0, secs = 0;

                if (!t->is_loop)
                    continue;
                thread_labels(&l, p, t);
                /* Counters from the thread table only grow; the ring's stalls
                 * go as it wraps. Dumps without stall_ns count from the ring. */
                if (raw != NULL && (raw->stall_ns != 0 || raw->stalls == 0)) {
                    count = (double)raw->stalls;
                    secs = (double)raw->stall_ns / 1e9;
                } else {
                    for (k = 0; k < p->nstalls; k++)
                        if (p->stalls[k].tid == t->tid && !p->stalls[k].in_progress) {
                            count++;
                            secs += p->stalls[k].duration_ms / 1e3;
                        }
                }
                switch (f) {
                case 0: sample(out, fams[f].name, l.text, (double)t->loop.iterations); break;
                case 1: busy_histogram(out, p, t, l.text); break;
                case 2: sample(out, fams[f].name, l.text, raw ? (double)raw->idle_ns / 1e9 : 0); break;
                case 3: sample(out, fams[f].name, l.text, t->loop.utilization); break;
                case 4: sample(out, fams[f].name, l.text, count); break;
                default: sample(out, fams[f].name, l.text, secs); break;
                }
            }
        }
    }
}

static void process_families(FILE *out, struct m_process **procs, size_t n)
{
    char labels[64];
    size_t i;

    family(out, "stalltrace_recording_seconds", "gauge", "Length of the recording.");
    for (i = 0; i < n; i++) {
        snprintf(labels, sizeof(labels), "pid=\"%d\"", procs[i]->pid);
        sample(out, "stalltrace_recording_seconds", labels, procs[i]->duration_s);
    }
    family(out, "stalltrace_recording_complete", "gauge", "1 when the process ended cleanly and the dump is complete.");
    for (i = 0; i < n; i++) {
        snprintf(labels, sizeof(labels), "pid=\"%d\"", procs[i]->pid);
        sample(out, "stalltrace_recording_complete", labels, procs[i]->complete ? 1 : 0);
    }
    family(out, "stalltrace_stall_threshold_seconds", "gauge", "Busy time from which an iteration is a stall.");
    for (i = 0; i < n; i++) {
        snprintf(labels, sizeof(labels), "pid=\"%d\"", procs[i]->pid);
        sample(out, "stalltrace_stall_threshold_seconds", labels, procs[i]->threshold_ms / 1e3);
    }
    family(out, "stalltrace_dropped_events_total", "counter", "Events lost because the event ring was overwritten.");
    for (i = 0; i < n; i++) {
        snprintf(labels, sizeof(labels), "pid=\"%d\"", procs[i]->pid);
        sample(out, "stalltrace_dropped_events_total", labels, (double)procs[i]->dropped);
    }
}

static void pool_families(FILE *out, struct m_process **procs, size_t n)
{
    static const struct {
        const char *name, *type, *help;
    } fams[] = {
        {"stalltrace_pool_threads", "gauge", "Worker threads of a thread pool."},
        {"stalltrace_pool_busy_ratio", "gauge", "Share of its workers' time a pool spent busy."},
        {"stalltrace_pool_saturated_seconds_total", "counter", "Time during which every worker of a pool was busy."},
        {"stalltrace_pool_saturations_total", "counter", "Spans during which every worker of a pool was busy."},
    };
    char labels[96];
    size_t f, i, j, any = 0;

    for (i = 0; i < n; i++)
        any += procs[i]->npools;
    if (!any)
        return;
    for (f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
        family(out, fams[f].name, fams[f].type, fams[f].help);
        for (i = 0; i < n; i++)
            for (j = 0; j < procs[i]->npools; j++) {
                const struct m_pool *pool = &procs[i]->pools[j];
                snprintf(labels, sizeof(labels), "pid=\"%d\",pool=\"%d\"", procs[i]->pid, pool->id);
                double v = f == 0 ? (double)pool->nthreads
                         : f == 1 ? pool->busy_ratio
                         : f == 2 ? pool->saturated_s
                                  : (double)pool->nsaturations;
                sample(out, fams[f].name, labels, v);
            }
    }
}

/* ---- Thread-pool task families (annotated queues) ---------------------------
 * The names a Python executor dashboard charts. One series per queue seen
 * through the annotation API, labelled with its pool ("none" when its workers
 * form no pool stalltrace recognised) and queue name; active threads per pool. */

static void queue_labels(char *buf, size_t len, const struct m_process *p, const struct m_queue *q)
{
    char name[200], pool[16];

    label_value(name, sizeof(name), q->name);
    if (q->pool >= 0)
        snprintf(pool, sizeof(pool), "%d", q->pool);
    else
        snprintf(pool, sizeof(pool), "none");
    snprintf(buf, len, "pid=\"%d\",pool=\"%s\",queue=\"%s\"", p->pid, pool, name);
}

/* A format.h histogram as cumulative octave buckets (the loop histogram's bounds). */
static void hist_series(FILE *out, const char *name, const char *labels, const uint64_t *hist,
                        double sum_s)
{
    uint64_t cum = 0, total = 0;
    unsigned b = 0;

    for (unsigned i = 0; i < ST_HIST_BUCKETS; i++)
        total += hist[i];
    for (unsigned octave = LE_FIRST_OCTAVE; octave <= ST_HIST_OCTAVES + ST_HIST_SUB_BITS; octave++) {
        uint64_t bound_us = (uint64_t)1 << octave;
        for (; b < ST_HIST_BUCKETS && st_hist_bucket_floor_ns(b) < bound_us * ST_HIST_UNIT_NS; b++)
            cum += hist[b];
        fprintf(out, "%s_bucket{%s,le=\"%.10g\"} %llu\n", name, labels, (double)bound_us / 1e6,
                (unsigned long long)cum);
    }
    fprintf(out, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, (unsigned long long)total);
    fprintf(out, "%s_sum{%s} %.9g\n", name, labels, isfinite(sum_s) ? sum_s : 0);
    fprintf(out, "%s_count{%s} %llu\n", name, labels, (unsigned long long)total);
}

static const struct st_queue *raw_queue(const struct m_process *p, const struct m_queue *q)
{
    for (uint32_t i = 0; i < p->dump->nqueues; i++)
        if (p->dump->queue_slots[i] == q->slot)
            return &p->dump->queues[i];
    return NULL;
}

/* Workers of a pool busy right now (for a finished process: at its end). */
static double pool_active(const struct m_process *p, const struct m_pool *pool)
{
    double active = 0;

    for (size_t i = 0; i < pool->nobjects; i++)
        for (uint32_t j = 0; j < p->dump->nobjects; j++) {
            const struct st_object *o = &p->dump->objects[j];
            if (o->addr == pool->objects[i] && o->live_members > o->idle)
                active += o->live_members - o->idle;
        }
    return active;
}

static void task_families(FILE *out, struct m_process **procs, size_t n)
{
    static const struct {
        const char *name, *type, *help;
    } fams[] = {
        {"threadpool_task_queue_time_seconds", "histogram",
         "Time a task waited in its queue, from submission to the start of its execution."},
        {"threadpool_task_execution_time_seconds", "histogram", "Execution time of a task."},
        {"threadpool_tasks_submitted_total", "counter", "Tasks submitted to the queue."},
        {"threadpool_tasks_completed_total", "counter", "Tasks that finished executing."},
    };
    char labels[320];
    size_t f, i, j, queues = 0, pools = 0;

    for (i = 0; i < n; i++) {
        queues += procs[i]->nqueues;
        pools += procs[i]->npools;
    }
    for (f = 0; queues && f < sizeof(fams) / sizeof(fams[0]); f++) {
        family(out, fams[f].name, fams[f].type, fams[f].help);
        for (i = 0; i < n; i++)
            for (j = 0; j < procs[i]->nqueues; j++) {
                const struct m_queue *q = &procs[i]->queues[j];
                const struct st_queue *raw = raw_queue(procs[i], q);
                if (!raw)
                    continue;
                queue_labels(labels, sizeof(labels), procs[i], q);
                switch (f) {
                case 0: hist_series(out, fams[f].name, labels, raw->wait_hist, (double)raw->wait_ns / 1e9); break;
                case 1: hist_series(out, fams[f].name, labels, raw->run_hist, (double)raw->run_ns / 1e9); break;
                case 2: sample(out, fams[f].name, labels, (double)q->submitted); break;
                default: sample(out, fams[f].name, labels, (double)q->finished); break;
                }
            }
    }
    if (!pools)
        return;
    family(out, "threadpool_active_threads", "gauge", "Worker threads of the pool busy with a task.");
    for (i = 0; i < n; i++)
        for (j = 0; j < procs[i]->npools; j++) {
            snprintf(labels, sizeof(labels), "pid=\"%d\",pool=\"%d\"", procs[i]->pid, procs[i]->pools[j].id);
            sample(out, "threadpool_active_threads", labels, pool_active(procs[i], &procs[i]->pools[j]));
        }
}

/* A lock's label value: its name (GIL), data symbol, else its address. */
static void lock_labels(char *buf, size_t len, const struct m_process *p, const struct m_lock *l)
{
    char raw[96], name[200];

    if (l->label)
        snprintf(raw, sizeof(raw), "%s", l->label);
    else if (l->symbol)
        snprintf(raw, sizeof(raw), "%s", l->symbol);
    else
        snprintf(raw, sizeof(raw), "0x%llx", (unsigned long long)l->object);
    label_value(name, sizeof(name), raw);
    snprintf(buf, len, "pid=\"%d\",lock=\"%s\",kind=\"%s\"", p->pid, name, l->kind ? l->kind : "unknown");
}

/* Lock waits: totals of every contended wait, and a histogram of the waits
 * long enough (>= threshold) to be recorded one by one. */
#define LOCK_LE_COUNT 12           /* 1 ms .. 2 s, doubling */
#define LOCK_LIMIT 50              /* locks per process: the longest waits */
static void lock_families(FILE *out, struct m_process **procs, size_t n)
{
    char labels[320];
    size_t i, j, k, any = 0;

    for (i = 0; i < n; i++)
        any += procs[i]->nlocks;
    if (!any)
        return;
    family(out, "stalltrace_lock_contentions_total", "counter", "Waits on a lock that blocked.");
    for (i = 0; i < n; i++)
        for (j = 0; j < procs[i]->nlocks && j < LOCK_LIMIT; j++) {
            lock_labels(labels, sizeof(labels), procs[i], &procs[i]->locks[j]);
            sample(out, "stalltrace_lock_contentions_total", labels, (double)procs[i]->locks[j].contentions);
        }
    family(out, "stalltrace_lock_wait_seconds_total", "counter", "Time threads spent blocked on a lock.");
    for (i = 0; i < n; i++)
        for (j = 0; j < procs[i]->nlocks && j < LOCK_LIMIT; j++) {
            lock_labels(labels, sizeof(labels), procs[i], &procs[i]->locks[j]);
            sample(out, "stalltrace_lock_wait_seconds_total", labels, procs[i]->locks[j].wait_total_ms / 1e3);
        }
    family(out, "stalltrace_lock_long_wait_seconds", "histogram",
           "Lock waits of at least the stall threshold, each recorded with its stack.");
    for (i = 0; i < n; i++) {
        const struct m_process *p = procs[i];
        for (j = 0; j < p->nlocks && j < LOCK_LIMIT; j++) {
            const struct m_lock *l = &p->locks[j];
            uint64_t counts[LOCK_LE_COUNT] = {0}, total = 0;
            double sum = 0;
            for (k = 0; k < p->nlock_waits; k++) {
                const struct m_lock_wait *w = &p->lock_waits[k];
                if (w->object != l->object)
                    continue;
                total++;
                sum += w->duration_ms / 1e3;
                for (unsigned b = 0; b < LOCK_LE_COUNT; b++)
                    counts[b] += w->duration_ms <= (double)(1u << b);
            }
            lock_labels(labels, sizeof(labels), p, l);
            for (unsigned b = 0; b < LOCK_LE_COUNT; b++)
                fprintf(out, "stalltrace_lock_long_wait_seconds_bucket{%s,le=\"%g\"} %llu\n", labels,
                        (double)(1u << b) / 1e3, (unsigned long long)counts[b]);
            fprintf(out, "stalltrace_lock_long_wait_seconds_bucket{%s,le=\"+Inf\"} %llu\n", labels,
                    (unsigned long long)total);
            sample(out, "stalltrace_lock_long_wait_seconds_sum", labels, sum);
            fprintf(out, "stalltrace_lock_long_wait_seconds_count{%s} %llu\n", labels, (unsigned long long)total);
        }
    }
}

int report_openmetrics(FILE *out, struct m_process **procs, size_t n, const struct report_options *opt)
{
    (void)opt;
    process_families(out, procs, n);
    loop_families(out, procs, n);
    pool_families(out, procs, n);
    task_families(out, procs, n);
    lock_families(out, procs, n);
    fprintf(out, "# EOF\n");
    return ferror(out) ? -1 : 0;
}

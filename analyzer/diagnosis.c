/* diagnosis.c - what to look at first: one actionable sentence per culprit
 * (a blocked event loop, an exhausted pool, a contended lock), worst first. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "model_build.h"

/* A pool saturated this long, or this share of the recording, is exhausted. */
#define POOL_MIN_SATURATED_S 1.0
#define POOL_MIN_SATURATED_SHARE 0.2

static int add(struct m_process *p, const char *culprit, double weight_ms, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int add(struct m_process *p, const char *culprit, double weight_ms, const char *fmt, ...)
{
    va_list ap;
    int rc;

    if (GROW_ONE(p->diagnosis, p->ndiagnosis) < 0)
        return -1;
    struct m_diagnosis *dg = &p->diagnosis[p->ndiagnosis];
    dg->culprit = culprit;
    dg->weight_ms = weight_ms;
    va_start(ap, fmt);
    rc = vasprintf(&dg->summary, fmt, ap);
    va_end(ap);
    if (rc < 0)
        return -1;
    p->ndiagnosis++;
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The loop thread that lost the most time to the stalls that are (or are
 * not) CPU starvation; 0 when there is none. */
static uint32_t worst_loop_thread(const struct m_process *p, bool starved, size_t *nthreads,
                                  double *total_ms)
{
    uint32_t worst = 0;
    double worst_total = 0;

    *nthreads = 0;
    /* Sorted by tid: dumps can hold very many stalls. */
    uint32_t *tids = calloc(p->nstalls ? p->nstalls : 1, sizeof(*tids));
    double *totals = calloc(p->nstalls ? p->nstalls : 1, sizeof(*totals));
    size_t i, n = 0, ndistinct = 0;
    if (!tids || !totals)
        goto out;
    for (i = 0; i < p->nstalls; i++)
        if (p->stalls[i].starved == starved)
            tids[n++] = p->stalls[i].tid;
    qsort(tids, n, sizeof(*tids), cmp_u32);
    for (i = 0; i < n; i++)
        if (i == 0 || tids[i] != tids[i - 1])
            tids[ndistinct++] = tids[i];
    for (i = 0; i < p->nstalls; i++) {
        if (p->stalls[i].starved != starved)
            continue;
        uint32_t *at = bsearch(&p->stalls[i].tid, tids, ndistinct, sizeof(*tids), cmp_u32);
        totals[at - tids] += p->stalls[i].duration_ms;
    }
    for (i = 0; i < ndistinct; i++)
        if (totals[i] > worst_total) {
            worst_total = totals[i];
            worst = tids[i];
        }
    *nthreads = ndistinct;
    *total_ms = worst_total;
out:
    free(tids);
    free(totals);
    return worst;
}

/* "mostly in 4 x clock_nanosleep, 1.0 s in all, at load (app.py:15)": the
 * calls of the one loop thread the sentence is about (call_count of them,
 * call_ms in all), not the site's, which sums every thread stalled there. */
static void site_story(const struct m_site *s, uint64_t call_count, double call_ms, char *buf, size_t len)
{
    char where[600], total[32];

    frames_where(&s->stack, where, sizeof(where));
    model_fmt_ms(total, sizeof(total), call_ms);
    if (s->call && call_count > 1)
        snprintf(buf, len, "mostly in %llu x %s, %s in all%s%s", (unsigned long long)call_count,
                 s->call, total, where[0] ? ", at " : "", where);
    else if (s->call)
        snprintf(buf, len, "mostly in %s%s%s", s->call, where[0] ? " called from " : "", where);
    else if (where[0])
        snprintf(buf, len, "mostly by CPU-bound work in %s", where);
    else
        snprintf(buf, len, "mostly by CPU-bound work");
}

/* event_loop_blocking, or cpu_starvation for stalls whose thread was mostly
 * runnable but not running: the loop thread that lost the most time. */
static int diagnose_loop(struct m_process *p, bool starved)
{
    size_t i, j, nthreads_stalled;
    double worst_total = 0;
    uint32_t worst_tid = worst_loop_thread(p, starved, &nthreads_stalled, &worst_total);

    if (worst_tid == 0)
        return 0;
    size_t count = 0;
    double max = 0, runq = 0, known = 0;
    bool in_progress = false;
    double *site_total = calloc(p->nsites ? p->nsites : 1, sizeof(double));
    if (!site_total)
        return -1;
    for (i = 0; i < p->nstalls; i++) {
        const struct m_stall *st = &p->stalls[i];
        if (st->tid != worst_tid || st->starved != starved)
            continue;
        count++;
        if (st->duration_ms > max)
            max = st->duration_ms;
        in_progress |= st->in_progress;
        site_total[st->site] += st->duration_ms;
        if (st->runq_ms >= 0) {
            runq += st->runq_ms;
            known += st->duration_ms;
        }
    }
    size_t site = 0;
    for (j = 1; j < p->nsites; j++)
        if (site_total[j] > site_total[site])
            site = j;
    free(site_total);
    uint64_t call_count = 0;
    double call_ms = 0;
    for (i = 0; i < p->nstalls; i++) {
        const struct m_stall *st = &p->stalls[i];
        if (st->tid != worst_tid || st->starved != starved || st->site != site)
            continue;
        for (j = 0; j < st->ncalls; j++)
            if (model_cmp_str(st->calls[j].call, p->sites[site].call) == 0) {
                call_count += st->calls[j].count;
                call_ms += st->calls[j].total_ms;
            }
    }

    char smax[32], stotal[32], what[900], others[96] = "", times[256];
    model_fmt_ms(smax, sizeof(smax), max);
    model_fmt_ms(stotal, sizeof(stotal), worst_total);
    site_story(&p->sites[site], call_count, call_ms, what, sizeof(what));
    if (nthreads_stalled > 1)
        snprintf(others, sizeof(others), "; %zu other loop thread%s stalled too", nthreads_stalled - 1,
                 nthreads_stalled > 2 ? "s" : "");
    if (count == 1)
        snprintf(times, sizeof(times), "once for %s%s", smax,
                 in_progress ? " (still blocked when the recording ended)" : "");
    else
        snprintf(times, sizeof(times), "%zu times for up to %s (%s in all%s)", count, smax, stotal,
                 in_progress ? ", the last still running when the recording ended" : "");
    if (starved)
        return add(p, "cpu_starvation", worst_total,
                   "The event loop of thread %u (%s) was held up %s, but it was waiting for a CPU "
                   "%.0f%% of that time: the machine's CPUs were busy elsewhere (other processes or "
                   "threads), not this loop's code%s.",
                   worst_tid, model_thread_name(p, worst_tid), times,
                   known > 0 ? 100.0 * runq / known : 0.0, others);
    /* Whom it waited for, when a stall of it waited for a lock whose holder is known. */
    const struct m_holder *holder = NULL;
    char held[1200] = "";
    for (i = 0; i < p->nstalls; i++) {
        const struct m_stall *st = &p->stalls[i];
        const struct m_holder *h = st->tid == worst_tid && !st->starved ? model_stall_blocked_by(p, st) : NULL;
        if (h && (!holder || h->held_ms > holder->held_ms))
            holder = h;
    }
    if (holder) {
        strcpy(held, "; the loop ");
        model_holder_story(p, holder, held + strlen(held), sizeof(held) - strlen(held));
    }
    return add(p, "event_loop_blocking", worst_total, "The event loop of thread %u (%s) was blocked %s, %s%s%s.",
               worst_tid, model_thread_name(p, worst_tid), times, what, held, others);
}

/* The knob that adds workers, by runtime. */
/* The knob that gives the pool more threads, named as its users know it. */
static const char *more_workers(const struct m_process *p, const struct m_pool *pool, char *buf, size_t len)
{
    const char *exe = frames_basename(p->exe);
    char now[48] = "";

    if (pool->max_threads)
        snprintf(now, sizeof(now), " (%u now)", pool->max_threads);
    if (strcmp(pool->kind, "cpython-executor") == 0)
        snprintf(buf, len, "raise the executor's max_workers%s", now);
    else if (strcmp(pool->kind, "anyio") == 0)
        snprintf(buf, len, "raise the total_tokens of anyio's CapacityLimiter, which FastAPI and Starlette run "
                 "`def` endpoints under (anyio.to_thread.current_default_thread_limiter().total_tokens%s)",
                 pool->max_threads ? now + 1 : "");
    else if (strcmp(pool->kind, "twisted") == 0)
        snprintf(buf, len, "raise the reactor's thread pool size with reactor.suggestThreadPoolSize%s", now);
    else if (strcmp(pool->kind, "libuv") == 0)
        snprintf(buf, len, "raise UV_THREADPOOL_SIZE%s", now);
    else if (strcmp(pool->kind, "v8-platform") == 0)
        snprintf(buf, len, "raise node's --v8-pool-size%s", now);
    else if (strcmp(pool->kind, "ruby") == 0 && p->argc > 1 && strstr(p->argv[1], "puma"))
        snprintf(buf, len, "give puma more threads (-t MIN:MAX, or `threads` in its config)");
    else if (strcmp(pool->kind, "ruby") == 0)
        snprintf(buf, len, "give the Ruby server more threads");
    else if (exe && strncmp(exe, "python", 6) == 0)
        snprintf(buf, len, "give the pool more threads (max_workers, if it is a ThreadPoolExecutor)");
    else
        snprintf(buf, len, "add workers");
    return buf;
}

/* The busiest loop thread's idle share, or -1 without a loop thread. */
static double loop_idle(const struct m_process *p)
{
    const struct m_thread *best = NULL;
    size_t i;

    for (i = 0; i < p->nthreads; i++)
        if (p->threads[i].is_loop && (!best || p->threads[i].loop.iterations > best->loop.iterations))
            best = &p->threads[i];
    return best ? 1 - best->loop.utilization : -1;
}

/* thread_pool_exhaustion: a pool whose saturation spans add up to a real
 * share of the recording. */
static int diagnose_pool(struct m_process *p, const struct m_pool *pool)
{
    char sat[32], dur[32], longest[32], who[96], idle[96] = "", busy[900], where[600], knob[300];
    double idle_share = loop_idle(p);

    if (pool->nsaturations == 0 ||
        (pool->spans_s < POOL_MIN_SATURATED_S && pool->spans_s < POOL_MIN_SATURATED_SHARE * p->duration_s))
        return 0;
    model_fmt_ms(sat, sizeof(sat), pool->saturated_s * 1e3);
    model_fmt_ms(dur, sizeof(dur), p->duration_s * 1e3);
    model_fmt_ms(longest, sizeof(longest), pool->longest_ms);
    if (pool->nthreads > 1)
        snprintf(who, sizeof(who), "%zu workers (thread %u and %zu other%s)", pool->nthreads, pool->tids[0],
                 pool->nthreads - 1, pool->nthreads > 2 ? "s" : "");
    else
        snprintf(who, sizeof(who), "1 worker (thread %u)", pool->tids[0]);
    if (idle_share >= 0)
        snprintf(idle, sizeof(idle), " while the event loop was idle %.0f%% of the time", idle_share * 100);

    if (pool->nbusy > 0 && pool->wrapped_share >= 0.5) {
        const struct m_busy *b = &pool->busy_in[0];
        frames_where(&b->stack, where, sizeof(where));
        snprintf(busy, sizeof(busy), "%.0f%% of the workers' time %s was in %s%s%s; %s or make that call "
                 "non-blocking", pool->top_share * 100,
                 pool->shares_of_saturation ? "while it was saturated" : "busy", b->call ? b->call : "a wait",
                 where[0] ? " called from " : "", where, more_workers(p, pool, knob, sizeof(knob)));
    } else {
        snprintf(busy, sizeof(busy), "The workers were busy outside any wrapped call (CPU-bound work): "
                 "%s only up to the number of cores, else make the work cheaper",
                 more_workers(p, pool, knob, sizeof(knob)));
    }
    const char *what = strcmp(pool->kind, "cpython-executor") == 0 ? "ThreadPoolExecutor"
                       : strcmp(pool->kind, "anyio") == 0          ? "anyio thread pool"
                       : strcmp(pool->kind, "twisted") == 0        ? "Twisted thread pool"
                       : strcmp(pool->kind, "libuv") == 0          ? "libuv thread pool"
                       : strcmp(pool->kind, "v8-platform") == 0    ? "pool of V8 platform workers"
                                                                   : "thread pool";
    char fed[480] = "";
    if (pool->nfed_by > 0 && pool->fed_by[0].where[0])
        snprintf(fed, sizeof(fed), " (what filled it: %zu submission%s from %s)", pool->fed_by[0].count,
                 pool->fed_by[0].count == 1 ? "" : "s", pool->fed_by[0].where);
    return add(p, "thread_pool_exhaustion", pool->saturated_s * 1e3,
               "The %s of %s was saturated for %s of %s (longest span %s)%s: work queued behind "
               "busy workers%s. %s.", what, who, sat, dur, longest, idle, fed, busy);
}

/* lock_contention: the culprit lock with the longest total wait (locks.c
 * judges which matter: a real share of the threads' time, or one long
 * wait, on a lock of the program's own). */
static int diagnose_locks(struct m_process *p)
{
    const struct m_lock *l = NULL;
    size_t i, others = 0;
    char total[32], max[32], name[400], where[600], at[620] = "", more[64] = "", by[48] = "", share[48] = "";
    char why[160] = "";

    for (i = 0; i < p->nlocks; i++) {
        if (!p->locks[i].culprit)
            continue;
        if (!l)
            l = &p->locks[i];      /* locks are sorted by total wait */
        else
            others++;
    }
    if (!l)
        return 0;
    model_fmt_ms(total, sizeof(total), l->wait_total_ms);
    model_fmt_ms(max, sizeof(max), l->wait_max_ms);
    if (l->label)
        snprintf(name, sizeof(name), "the GIL (CPython's global interpreter lock, %s %s)", l->kind,
                 l->symbol ? l->symbol : "");
    else if (l->symbol)
        snprintf(name, sizeof(name), "the %s %s", l->kind, l->symbol);
    else
        snprintf(name, sizeof(name), "the %s at 0x%llx", l->kind, (unsigned long long)l->object);
    if (l->waiters > 1)
        snprintf(by, sizeof(by), " by %zu threads", l->waiters);
    if (l->wait_share >= 0.01)
        snprintf(share, sizeof(share), " (%.0f%% of the waiting threads' time)", l->wait_share * 100);
    if (l->label && l->timeouts > 0)
        snprintf(why, sizeof(why), "; %llu of them timed out, the holder running on while another "
                 "thread wanted the CPU", (unsigned long long)l->timeouts);
    frames_where(&l->stack, where, sizeof(where));
    if (where[0])
        snprintf(at, sizeof(at), ", mostly in %s", where);
    if (others)
        snprintf(more, sizeof(more), " (%zu other contended lock%s below)", others, others > 1 ? "s" : "");
    /* Whom the longest wait with a known holder waited for. */
    const struct m_holder *holder = model_lock_holder(p, l->object);
    char held[1200] = "";
    if (holder) {
        snprintf(held, sizeof(held), "; thread %u ", holder->waiter_tid);
        model_holder_story(p, holder, held + strlen(held), sizeof(held) - strlen(held));
    }
    return add(p, "lock_contention", l->wait_total_ms,
               "Threads waited %s in all%s for %s: %llu waits%s of up to %s%s%s%s%s. %s", total, share, name,
               (unsigned long long)l->contentions, by, max, why, at, held, more,
               l->label ? "Python threads running at once take turns: move CPU-bound work to processes "
                          "(ProcessPoolExecutor) or to code that releases the GIL."
                        : "Hold it for less time (no blocking call while holding it) or split it.");
}

static int cmp_weight(const void *a, const void *b)
{
    const struct m_diagnosis *x = a, *y = b;
    return x->weight_ms > y->weight_ms ? -1 : x->weight_ms < y->weight_ms;
}

int model_build_diagnosis(struct m_process *p)
{
    size_t i;

    if (diagnose_loop(p, false) < 0 || diagnose_loop(p, true) < 0)
        return -1;
    for (i = 0; i < p->npools; i++)
        if (diagnose_pool(p, &p->pools[i]) < 0)
            return -1;
    if (diagnose_locks(p) < 0)
        return -1;
    /* The culprit that explains the most time first (stable for ties). */
    if (p->ndiagnosis > 1)
        qsort(p->diagnosis, p->ndiagnosis, sizeof(*p->diagnosis), cmp_weight);
    return 0;
}

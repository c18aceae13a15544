/* report_text.c - the default report for a person at a terminal: what to do
 * first, the worst stall sites, loop threads, thread pools and locks. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "report.h"
#include "report_util.h"

#define WIDTH 100

/* Colour only on a terminal, and never with NO_COLOR set (no-color.org). */
static const char *bold = "", *dim = "", *plain = "";

static void pick_colours(FILE *out)
{
    int tty = isatty(fileno(out)) && getenv("NO_COLOR") == NULL;
    bold = tty ? "\033[1m" : "";
    dim = tty ? "\033[2m" : "";
    plain = tty ? "\033[0m" : "";
}

/* Print text wrapped at WIDTH with every line indented. */
static void wrapped(FILE *out, const char *text, int indent)
{
    const char *p = text;
    int width = WIDTH - indent;

    while (*p) {
        int n = (int)strlen(p), cut = n;
        if (n > width) {
            for (cut = width; cut > 0 && p[cut] != ' '; cut--)
                ;
            if (cut == 0)
                cut = width;
        }
        fprintf(out, "%*s%.*s\n", indent, "", cut, p);
        p += cut;
        while (*p == ' ')
            p++;
    }
}

/* One line, wrapped at a space past the terminal width (never inside a
 * name or a path: a cut file name cannot be found), the rest indented
 * under its first word. */
static void line_fit(FILE *out, const char *s)
{
    int indent = (int)strspn(s, " ");
    if ((int)strlen(s) <= WIDTH) {
        fprintf(out, "%s\n", s);
        return;
    }
    int cut = WIDTH;
    while (cut > indent && s[cut] != ' ')
        cut--;
    if (cut <= indent) {
        fprintf(out, "%s\n", s);
        return;
    }
    fprintf(out, "%.*s\n", cut, s);
    wrapped(out, s + cut + 1, indent + 4);
}

static void frame_line(FILE *out, const struct sym_frame *f)
{
    char buf[1024], fn[32], where[700] = "";
    const char *name = f->function;

    if (!name) {
        snprintf(fn, sizeof(fn), "0x%llx", (unsigned long long)f->address);
        name = fn;
    }
    if (f->file && f->line > 0)
        snprintf(where, sizeof(where), "%s %s:%d", f->module ? f->module : "",
                 frames_basename(f->file), f->line);
    else if (f->file)
        snprintf(where, sizeof(where), "%s %s", f->module ? f->module : "", frames_basename(f->file));
    else if (f->module && strcmp(f->module, name) != 0)
        snprintf(where, sizeof(where), "%s", f->module);
    snprintf(buf, sizeof(buf), "       %s%s%s%s%s%s", name, where[0] ? " (" : "", where,
             where[0] ? ")" : "", f->note ? " - " : "", f->note ? f->note : "");
    line_fit(out, buf);
}

/* Innermost frame, then frames of the user's code, leaving out runtime
 * plumbing so the frames that matter fit in a few lines. */
static void site_stack(FILE *out, const struct m_stack *s, size_t limit, bool all_frames)
{
    size_t i, shown = 0, left;

    /* Unnamed frames (a stripped interpreter's, a library's without symbols)
     * are folded so the named ones stay in view. */
    for (i = 0; i < s->n && shown < limit; i++) {
        if (!all_frames && frames_folded(s, i))
            continue;
        frame_line(out, s->frames[i]);
        shown++;
    }
    left = s->n - shown;
    if (left > 0 || s->truncated)
        fprintf(out, "       %s(%zu more frame%s of runtime machinery or callers%s: --all-frames shows "
                     "them)%s\n", dim, left, left == 1 ? "" : "s",
                s->truncated ? "; stack cut by the recorder" : "", plain);
}

/* "27358, 27359, 27360 and 1 more" */
static void tid_list(char *buf, size_t len, const uint32_t *tids, size_t n)
{
    size_t i, used = 0, shown = n > 6 ? 5 : n;

    buf[0] = '\0';
    for (i = 0; i < shown && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%u", i ? ", " : "", tids[i]);
    if (shown < n && used < len)
        snprintf(buf + used, len - used, " and %zu more", n - shown);
}

/* "p50 2.0 s, p99 4.0 s, max 4.0 s over 10 tasks" */
static void dist_text(char *buf, size_t len, const struct m_dist *d)
{
    char a[32], b[32], c[32];

    model_fmt_ms(a, sizeof(a), d->p50_ms);
    model_fmt_ms(b, sizeof(b), d->p99_ms);
    model_fmt_ms(c, sizeof(c), d->max_ms);
    snprintf(buf, len, "p50 %s, p99 %s, max %s over %llu task%s", a, b, c,
             (unsigned long long)d->count, d->count == 1 ? "" : "s");
}

/* The queue-wait line of a pool: exact when a queue's tasks ran on it, else
 * why it is unknown. */
static void pool_queue_text(FILE *out, const struct m_process *p, const struct m_pool *pool)
{
    char w[160], r[160], names[160] = "";
    size_t used = 0;

    if (pool->queue_wait.known && !pool->queue_wait.exact) {
        dist_text(w, sizeof(w), &pool->queue_wait);
        char line[400];
        snprintf(line, sizeof(line), "    queue wait (an estimate: the queue taken as draining evenly until a "
                 "worker found it empty): %s", w);
        line_fit(out, line);
        return;
    }
    if (pool->nqueues == 0 || !pool->queue_wait.known) {
        fprintf(out, "    queue wait: unknown (no task submissions are visible for this pool: libuv or "
                     "an unannotated pool; see include/stalltrace/annotate.h)\n");
        return;
    }
    for (size_t i = 0; i < pool->nqueues && used + 2 < sizeof(names); i++)
        used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s", i ? ", " : "",
                                 p->queues[pool->queues[i]].name);
    if (used >= sizeof(names))
        names[sizeof(names) - 1] = '\0';
    dist_text(w, sizeof(w), &pool->queue_wait);
    fprintf(out, "    queue wait (exact, queue %s): %s\n", names, w);
    if (pool->run.known) {
        dist_text(r, sizeof(r), &pool->run);
        fprintf(out, "    run time per task: %s\n", r);
    }
}

/* "what filled the pool: 12 submissions from handle_upload (app.js:40)" */
static void pool_fed_text(FILE *out, const struct m_pool *pool, const struct text_limits *lim)
{
    char buf[1024];
    size_t used = 0, shown = 0;

    if (pool->nfed_by == 0)
        return;
    used = (size_t)snprintf(buf, sizeof(buf), "    what filled the pool:");
    for (size_t i = 0; i < pool->nfed_by && i < 3 && used < sizeof(buf); i++) {
        const struct m_feeder *f = &pool->fed_by[i];
        shown += f->count;
        used += (size_t)snprintf(buf + used, sizeof(buf) - used, "%s %zu submission%s from %s",
                                 i ? "," : "", f->count, f->count == 1 ? "" : "s",
                                 f->where[0] ? f->where : "an unnamed place");
    }
    if (used < sizeof(buf) && pool->fed_total > shown)
        used += (size_t)snprintf(buf + used, sizeof(buf) - used, " (%llu seen in all, the others without a stack)",
                                 (unsigned long long)pool->fed_total);
    /* libuv wakes a worker only when it counts one idle: a task queued
     * behind busy workers makes no call the recorder sees. */
    if (used < sizeof(buf) && pool->kind && strcmp(pool->kind, "libuv") == 0)
        snprintf(buf + used, sizeof(buf) - used, "; at least: libuv signals only idle workers, so "
                 "submissions that queued behind busy ones are not seen");
    line_fit(out, buf);
    site_stack(out, &pool->fed_by[0].stack, lim->frames, lim->all_frames);
}

/* Queues whose workers form no pool (a pool stalltrace did not recognise). */
static void queues_text(FILE *out, const struct m_process *p)
{
    char w[160], r[160];
    size_t i, shown = 0;

    for (i = 0; i < p->nqueues; i++) {
        const struct m_queue *q = &p->queues[i];
        if (q->pool >= 0)
            continue;
        if (shown++ == 0)
            fprintf(out, "Task queues not matched to a pool\n");
        dist_text(w, sizeof(w), &q->wait);
        fprintf(out, "  %s: %llu submitted, %llu finished, %zu worker thread%s\n", q->name,
                (unsigned long long)q->submitted, (unsigned long long)q->finished, q->nworkers,
                q->nworkers == 1 ? "" : "s");
        if (q->wait.known)
            fprintf(out, "    queue wait (exact): %s\n", w);
        if (q->run.known) {
            dist_text(r, sizeof(r), &q->run);
            fprintf(out, "    run time per task: %s\n", r);
        }
    }
    if (shown)
        fputc('\n', out);
}

/* A pool whose workers were busy less than a threshold in all, and never
 * saturated, did nothing worth a sentence about where its time went: an
 * idle pool's few microseconds between waits are not "CPU". */
static bool pool_busy_matters(const struct m_process *p, const struct m_pool *pool)
{
    return pool->busy_s > 0 && (pool->nsaturations > 0 || pool->busy_s * 1e3 >= p->threshold_ms);
}

static void pools_text(FILE *out, const struct m_process *p, const struct text_limits *lim)
{
    char a[32], b[32], c[32], tids[96], buf[1024], where[600];
    size_t i, j;

    if (p->npools == 0)
        return;
    fprintf(out, "%sThread pools%s\n", bold, plain);
    for (i = 0; i < p->npools; i++) {
        const struct m_pool *pool = &p->pools[i];
        tid_list(tids, sizeof(tids), pool->tids, pool->nthreads);
        char what[64];
        if (pool->max_threads)
            snprintf(what, sizeof(what), " (%s, up to %u threads)", pool->kind, pool->max_threads);
        else
            snprintf(what, sizeof(what), " (%s)", pool->kind);
        snprintf(buf, sizeof(buf), "  pool %d%s: %zu worker%s (thread%s %s), busy %.0f%% of their time",
                 pool->id, what, pool->nthreads, pool->nthreads == 1 ? "" : "s", pool->nthreads == 1 ? "" : "s",
                 tids, pool->busy_ratio * 100);
        line_fit(out, buf);
        if (pool->nobjects)
            fprintf(out, "    idle workers wait on the %s 0x%llx%s\n", pool->object_kind,
                    (unsigned long long)pool->objects[0],
                    pool->nobjects > 1 ? " and others (each worker parks on its own)" : "");
        else
            fprintf(out, "    its workers never waited for work: known from its task queue\n");
        model_fmt_ms(a, sizeof(a), pool->saturated_s * 1e3);
        model_fmt_ms(b, sizeof(b), p->threshold_ms);
        if (pool->nsaturations == 0 && strcmp(pool->saturation_basis, "fixed_size") != 0) {
            fprintf(out, "    never saturated: no task waited %s or more for a worker%s\n", b,
                    strcmp(pool->saturation_basis, "queue_wait") == 0 ? "" : " once it stopped growing");
        } else if (pool->nsaturations == 0) {
            fprintf(out, "    never saturated for %s or more (all workers busy for %s in all, in shorter "
                         "spans)\n", b, a);
        } else {
            model_fmt_ms(c, sizeof(c), pool->longest_ms);
            fprintf(out, "    saturated %s in all%s: %zu span%s of %s or more, the longest %s\n", a,
                    strcmp(pool->saturation_basis, "queue_wait") == 0 ? " (tasks waited for a worker)" : "",
                    pool->nsaturations, pool->nsaturations == 1 ? "" : "s", b, c);
            for (j = 0; j < pool->nsaturations && j < 5; j++) {
                const struct m_span *s = &pool->saturations[j];
                model_fmt_ms(c, sizeof(c), s->duration_ms);
                fprintf(out, "      at %.3f s for %s%s\n", s->start_s, c,
                        s->in_progress ? " (still saturated when the recording ended)" : "");
            }
            if (pool->nsaturations > 5)
                fprintf(out, "      ... %zu more (--format json has all)\n", pool->nsaturations - 5);
        }
        /* "4/4 workers busy for 4.0 s, 96% of it in clock_nanosleep called from X" */
        const char *of = pool->shares_of_saturation ? "while saturated" : "of their busy time";
        model_fmt_ms(a, sizeof(a), (pool->shares_of_saturation ? pool->spans_s : pool->busy_s) * 1e3);
        if (pool->nbusy > 0 && pool->wrapped_share >= 0.5) {
            const struct m_busy *top = &pool->busy_in[0];
            frames_where(&top->stack, where, sizeof(where));
            size_t busy_at_once = pool->max_threads && pool->max_threads < pool->nthreads ? pool->max_threads
                                                                                          : pool->nthreads;
            snprintf(buf, sizeof(buf), "    %zu/%zu workers busy for %s, %.0f%% of it in %s%s%s",
                     busy_at_once, pool->nthreads, a, pool->top_share * 100, top->call ? top->call : "a wait",
                     where[0] ? " called from " : "", where);
            if (!pool->shares_of_saturation)
                snprintf(buf, sizeof(buf), "    %.0f%% of the workers' busy time (%s) was in %s%s%s",
                         pool->top_share * 100, a, top->call ? top->call : "a wait",
                         where[0] ? " called from " : "", where);
            line_fit(out, buf);
        } else if (pool_busy_matters(p, pool)) {
            fprintf(out, "    %s, %.0f%% of the time was in wrapped calls: busy outside any wrapped call "
                         "(CPU)\n", of, pool->wrapped_share * 100);
        }
        pool_queue_text(out, p, pool);
        pool_fed_text(out, pool, lim);
        for (j = 0; j < pool->nbusy && j < lim->sites && j < 3; j++) {
            const struct m_busy *bz = &pool->busy_in[j];
            model_fmt_ms(a, sizeof(a), bz->total_ms);
            model_fmt_ms(c, sizeof(c), bz->max_ms);
            fprintf(out, "    %zu. %s: %zu call%s, total %s, max %s\n", j + 1, bz->call ? bz->call : "(unknown)",
                    bz->count, bz->count == 1 ? "" : "s", a, c);
            site_stack(out, &bz->stack, lim->frames, lim->all_frames);
        }
    }
    fputc('\n', out);
}

/* The longest-held of the lock's named holders, said as its waiter would. */
static void lock_holder_text(FILE *out, const struct m_process *p, const struct m_lock *l)
{
    const struct m_holder *best = model_lock_holder(p, l->object);
    char buf[1024];

    if (!best)
        return;
    const struct m_thread *w = thread_by_tid(p, best->waiter_tid);
    if (w && w->is_loop)
        strcpy(buf, "the loop ");
    else
        snprintf(buf, sizeof(buf), "thread %u ", best->waiter_tid);
    model_holder_story(p, best, buf + strlen(buf), sizeof(buf) - strlen(buf));
    wrapped(out, buf, 7);
}

static void locks_text(FILE *out, const struct m_process *p, const struct text_limits *lim)
{
    char a[32], b[32], name[400], buf[1024], by[48];
    size_t i, shown = 0, waited = 0;

    for (i = 0; i < p->nlocks; i++)
        waited += !p->locks[i].idle;
    if (waited == 0)
        return;
    fprintf(out, "%sLocks waited for, longest total wait first (%zu of %zu)%s\n", bold,
            waited < lim->sites ? waited : lim->sites, waited, plain);
    for (i = 0; i < p->nlocks && shown < lim->sites; i++) {
        const struct m_lock *l = &p->locks[i];
        if (l->idle)
            continue;
        shown++;
        if (l->label)
            snprintf(name, sizeof(name), "the %s (%s %s)", l->label, l->kind, l->symbol ? l->symbol : "");
        else if (l->symbol)
            snprintf(name, sizeof(name), "%s %s", l->kind, l->symbol);
        else
            snprintf(name, sizeof(name), "%s 0x%llx", l->kind, (unsigned long long)l->object);
        by[0] = '\0';
        if (l->waiters > 1)
            snprintf(by, sizeof(by), " by %zu threads", l->waiters);
        model_fmt_ms(a, sizeof(a), l->wait_total_ms);
        model_fmt_ms(b, sizeof(b), l->wait_max_ms);
        snprintf(buf, sizeof(buf), "  %zu. %s: %llu wait%s%s, total %s, max %s", shown, name,
                 (unsigned long long)l->contentions, l->contentions == 1 ? "" : "s", by, a, b);
        line_fit(out, buf);
        if (l->internal)
            fprintf(out, "       internal to %s: not a lock of the program's\n", l->internal);
        lock_holder_text(out, p, l);
        if (l->long_waits == 0)
            fprintf(out, "       (no single wait reached the threshold: no stack recorded)\n");
        else
            site_stack(out, &l->stack, lim->frames, lim->all_frames);
    }
    fputc('\n', out);
}

/* Whom the site's stalls waited for: the longest-held lock among them. */
static void site_holder_text(FILE *out, const struct m_process *p, size_t site)
{
    const struct m_holder *best = NULL;
    char buf[1024];

    for (size_t i = 0; i < p->nstalls; i++) {
        if (p->stalls[i].site != site)
            continue;
        const struct m_holder *h = model_stall_blocked_by(p, &p->stalls[i]);
        if (h && (!best || h->held_ms > best->held_ms))
            best = h;
    }
    if (!best)
        return;
    strcpy(buf, "the loop ");
    model_holder_story(p, best, buf + strlen(buf), sizeof(buf) - strlen(buf));
    wrapped(out, buf, 5);
}

/* How the site's stalls spent their time, and why a stack is missing. */
static void site_calls_text(FILE *out, const struct m_process *p, const struct m_site *s)
{
    char a[32], where[600], buf[1024];

    if (s->call && s->call_count > 1) {
        model_fmt_ms(a, sizeof(a), s->call_total_ms);
        frames_where(&s->stack, where, sizeof(where));
        snprintf(buf, sizeof(buf), "     %llu x %s, %s in all%s%s", (unsigned long long)s->call_count,
                 s->call, a, where[0] ? ", at " : "", where);
        line_fit(out, buf);
    }
    if (s->starved)
        fprintf(out, "     %sthe loop thread was runnable but not running most of these stalls: "
                     "the CPUs were busy elsewhere%s\n", dim, plain);
    const char *note = stall_stack_note(p, s->call, &s->stack);
    if (note && !s->starved)
        fprintf(out, "       (no stack: %s)\n", note);
}

/* Nothing past the threshold anywhere: no diagnosis, no stall, no pool
 * saturation, no lock that matters. */
static bool healthy(const struct m_process *p)
{
    if (p->ndiagnosis || p->nsites)
        return false;
    for (size_t i = 0; i < p->npools; i++)
        if (p->pools[i].nsaturations)
            return false;
    for (size_t i = 0; i < p->nlocks; i++)
        if (p->locks[i].culprit)
            return false;
    return true;
}

/* A healthy recording says so and gives the figures that show it, a line
 * each: nothing a person must read through to learn there is nothing. */
static void healthy_text(FILE *out, const struct m_process *p)
{
    char a[32], b[32], c[32], buf[1024];
    size_t i, loops = 0;

    model_fmt_ms(a, sizeof(a), p->threshold_ms);
    fprintf(out, "%sNothing to fix%s: no event-loop stall of %s or more, no pool saturated, no lock "
                 "contended.\n", bold, plain, a);
    for (i = 0; i < p->nthreads; i++) {
        const struct m_thread *t = &p->threads[i];
        if (!t->is_loop)
            continue;
        loops++;
        model_fmt_ms(a, sizeof(a), t->loop.p50_ms);
        model_fmt_ms(b, sizeof(b), t->loop.p99_ms);
        model_fmt_ms(c, sizeof(c), t->loop.max_ms);
        snprintf(buf, sizeof(buf), "  loop thread %u (%s): %llu iterations, busy %.1f%%, p50 %s, p99 %s, max %s",
                 t->tid, t->name, (unsigned long long)t->loop.iterations, t->loop.utilization * 100, a, b, c);
        line_fit(out, buf);
    }
    if (loops == 0)
        fprintf(out, "  no loop thread was seen (no thread kept returning to the same event wait)\n");
    for (i = 0; i < p->npools; i++) {
        const struct m_pool *pool = &p->pools[i];
        char what[64], wait[64] = "";
        if (pool->max_threads)
            snprintf(what, sizeof(what), "%s, up to %u threads", pool->kind, pool->max_threads);
        else
            snprintf(what, sizeof(what), "%s", pool->kind);
        if (pool->queue_wait.known) {
            model_fmt_ms(a, sizeof(a), pool->queue_wait.p99_ms);
            snprintf(wait, sizeof(wait), ", queue wait p99 %s%s", a, pool->queue_wait.exact ? "" : " (an estimate)");
        } else {
            snprintf(wait, sizeof(wait), ", queue wait: unknown");  /* no submissions visible */
        }
        snprintf(buf, sizeof(buf), "  pool %d (%s): %zu worker%s, busy %.0f%%, never saturated%s",
                 pool->id, what, pool->nthreads, pool->nthreads == 1 ? "" : "s", pool->busy_ratio * 100, wait);
        line_fit(out, buf);
    }
    fputc('\n', out);
}

static void process_text(FILE *out, const struct m_process *p, const struct text_limits *lim)
{
    char cmd[512] = "", a[32], b[32], c[32], buf[1024];
    size_t i, used = 0;
    int k;

    for (k = 0; k < p->argc && used + 1 < sizeof(cmd); k++)
        used += (size_t)snprintf(cmd + used, sizeof(cmd) - used, "%s%s", k ? " " : "", p->argv[k]);
    if (!cmd[0])
        snprintf(cmd, sizeof(cmd), "%s", p->exe);
    model_fmt_ms(a, sizeof(a), p->duration_s * 1000);
    model_fmt_ms(b, sizeof(b), p->threshold_ms);
    snprintf(buf, sizeof(buf), "== pid %d: %s", p->pid, cmd);
    line_fit(out, buf);
    fprintf(out, "   %s recorded, stall threshold %s%s\n", a, b, p->complete ? ", complete" : "");

    if (p->attached)
        fprintf(out, "   attached to the running process%s\n",
                p->end_reason == ST_END_DETACHED ? ", then detached" : "");
    if (p->end_reason == ST_END_STEPPED_ASIDE)
        fprintf(out, "   the program filtered its system calls (seccomp) at %.3f s: the recorder stepped aside "
                     "there, and recorded nothing after\n", p->duration_s);
    if (!p->complete) {
        if (p->end_reason == ST_END_FATAL_SIGNAL)
            fprintf(out, "   the process died from signal %d (%s): recording incomplete\n",
                    p->end_signal, strsignal(p->end_signal));
        else if (p->end_reason == ST_END_EXEC)
            fprintf(out, "   the process exec'd another program: recording incomplete\n");
        else
            fprintf(out, "   the process did not exit cleanly (killed, or still running): "
                         "recording incomplete\n");
    }
    if (p->dropped)
        fprintf(out, "   %llu event%s dropped: the event ring was overwritten "
                     "(a larger --buffer-mb keeps more)\n",
                (unsigned long long)p->dropped, p->dropped == 1 ? " was" : "s were");
    if (p->python_note)
        fprintf(out, "   %s\n", p->python_note);
    fputc('\n', out);

    if (healthy(p)) {
        healthy_text(out, p);
        return;
    }
    if (p->ndiagnosis == 0) {
        fprintf(out, "No event-loop stall of %s or more was recorded; no pool was exhausted and no "
                     "lock contended.\n\n", b);
    } else {
        fprintf(out, "%sWhat to look at first%s\n", bold, plain);
        for (i = 0; i < p->ndiagnosis; i++)
            wrapped(out, p->diagnosis[i].summary, 2);
        fputc('\n', out);
    }

    if (p->nsites > 0) {
        size_t n = p->nsites < lim->sites ? p->nsites : lim->sites;
        fprintf(out, "%sStall sites, worst first (%zu of %zu)%s\n", bold, n, p->nsites, plain);
        for (i = 0; i < n; i++) {
            const struct m_site *s = &p->sites[i];
            model_fmt_ms(a, sizeof(a), s->max_ms);
            model_fmt_ms(c, sizeof(c), s->total_ms);
            fprintf(out, "  %zu. %s: %zu stall%s, max %s, total %s\n", i + 1,
                    s->starved ? "waiting for a CPU" : s->call ? s->call : "CPU-bound (sampled)",
                    s->count, s->count == 1 ? "" : "s", a, c);
            site_calls_text(out, p, s);
            site_holder_text(out, p, i);
            site_stack(out, &s->stack, lim->frames, lim->all_frames);
        }
        fputc('\n', out);
    }

    bool any_loop = false;
    for (i = 0; i < p->nthreads; i++)
        any_loop |= p->threads[i].is_loop;
    if (any_loop) {
        fprintf(out, "%sLoop threads%s\n", bold, plain);
        fprintf(out, "  %-8s %-16s %12s %7s %10s %10s %10s\n", "tid", "name", "iterations", "busy",
                "p50", "p99", "max");
        for (i = 0; i < p->nthreads; i++) {
            const struct m_thread *t = &p->threads[i];
            char d[32];
            if (!t->is_loop)
                continue;
            model_fmt_ms(a, sizeof(a), t->loop.p50_ms);
            model_fmt_ms(c, sizeof(c), t->loop.p99_ms);
            model_fmt_ms(d, sizeof(d), t->loop.max_ms);
            fprintf(out, "  %-8u %-16s %12llu %6.1f%% %10s %10s %10s\n", t->tid, t->name,
                    (unsigned long long)t->loop.iterations, t->loop.utilization * 100, a, c, d);
        }
        fputc('\n', out);
    } else {
        fprintf(out, "No loop thread was seen (no thread kept returning to the same event wait).\n\n");
    }
    pools_text(out, p, lim);
    queues_text(out, p);
    locks_text(out, p, lim);
    if (p->nslow_calls > 0)
        fprintf(out, "%zu slow call%s outside loop iterations (see --format json).\n\n",
                p->nslow_calls, p->nslow_calls == 1 ? "" : "s");
}

int report_text(FILE *out, struct m_process **procs, size_t n, const struct report_options *opt)
{
    static const struct text_limits full = {10, 12, false};
    size_t i;

    pick_colours(out);
    for (i = 0; i < n; i++)
        process_text(out, procs[i], opt && opt->limits ? opt->limits : &full);
    return ferror(out) ? -1 : 0;
}

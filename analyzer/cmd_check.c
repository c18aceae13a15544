/* cmd_check.c - `stalltrace check`: a CI gate. Holds each dump to the bounds
 * given; exit 0 all hold, 1 one does not, 2 bad usage or input; --junit. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "cmd.h"
#include "report_util.h"

enum bound_id { B_STALL, B_P99, B_UTIL, B_SATURATED, B_LOCK_WAIT, B_COUNT };

static const struct {
    const char *flag;              /* without the leading "--" */
} bound_info[B_COUNT] = {
    [B_STALL] = {"max-stall-ms"},
    [B_P99] = {"max-loop-p99-ms"},
    [B_UTIL] = {"max-loop-utilization"},
    [B_SATURATED] = {"max-saturated-s"},
    [B_LOCK_WAIT] = {"max-lock-wait-ms"},
};

/* The outcome of one bound on one process: its violation lines. */
struct outcome {
    char **lines;
    size_t n, cap;
};

static void add_line(struct outcome *o, const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;

    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    if (!s)
        return;
    if (GROW(o->lines, o->cap, o->n + 1, 8) < 0) {
        free(s);
        return;
    }
    o->lines[o->n++] = s;
}

static void thread_where(const struct m_process *p, uint32_t tid, char *buf, size_t len)
{
    const struct m_thread *t = thread_by_tid(p, tid);
    char name[ST_NAME_MAX + 1];

    snprintf(name, sizeof(name), "%s", t ? t->name : "?");
    sanitize_ascii(name);
    snprintf(buf, len, "pid %d, thread %u (%s)", p->pid, tid, name);
}

/* Stalls over the bound, one line per thread and site (worst first, as the
 * sites are), so a thousand stalls at one place read as one problem. */
static void check_stalls(const struct m_process *p, double bound, struct outcome *o)
{
    size_t s, i;

    for (s = 0; s < p->nsites; s++) {
        const struct m_site *site = &p->sites[s];
        /* Threads of this site, in order of first appearance. */
        for (i = 0; i < p->nstalls; i++) {
            const struct m_stall *st = &p->stalls[i];
            size_t j, count = 0;
            double max = 0;
            bool seen = false;

            if (st->site != s || st->duration_ms <= bound)
                continue;
            for (j = 0; j < i && !seen; j++)
                seen = p->stalls[j].site == s && p->stalls[j].tid == st->tid &&
                       p->stalls[j].duration_ms > bound;
            if (seen)
                continue;
            for (j = i; j < p->nstalls; j++)
                if (p->stalls[j].site == s && p->stalls[j].tid == st->tid && p->stalls[j].duration_ms > bound) {
                    count++;
                    if (p->stalls[j].duration_ms > max)
                        max = p->stalls[j].duration_ms;
                }
            char where[160], top[768], m[32], b[32];
            thread_where(p, st->tid, where, sizeof(where));
            stack_top_describe(&site->stack, top, sizeof(top));
            model_fmt_ms(m, sizeof(m), max);
            model_fmt_ms(b, sizeof(b), bound);
            if (count == 1)
                add_line(o, "stall of %s exceeds %s (--max-stall-ms): %s, in %s at %s", m, b, where,
                         site->call ? site->call : "CPU-bound work", top);
            else
                add_line(o, "%zu stalls of up to %s exceed %s (--max-stall-ms): %s, in %s at %s", count, m, b,
                         where, site->call ? site->call : "CPU-bound work", top);
        }
    }
}

/* Where a loop thread lost the most time: the top of its worst site. */
static void worst_site_of(const struct m_process *p, uint32_t tid, char *buf, size_t len)
{
    size_t i;

    for (i = 0; i < p->nstalls; i++)
        if (p->stalls[i].tid == tid) {
            /* Sites are worst first: the lowest site index of the thread. */
            size_t best = p->stalls[i].site, j;
            for (j = i; j < p->nstalls; j++)
                if (p->stalls[j].tid == tid && p->stalls[j].site < best)
                    best = p->stalls[j].site;
            char top[700];
            stack_top_describe(&p->sites[best].stack, top, sizeof(top));
            snprintf(buf, len, ", worst stall site %s at %s",
                     p->sites[best].call ? p->sites[best].call : "CPU-bound work", top);
            return;
        }
    buf[0] = '\0';
}

static void check_loops(const struct m_process *p, enum bound_id id, double bound, struct outcome *o)
{
    size_t i;

    for (i = 0; i < p->nthreads; i++) {
        const struct m_thread *t = &p->threads[i];
        char where[160], worst[800], m[32], b[32];

        if (!t->is_loop)
            continue;
        thread_where(p, t->tid, where, sizeof(where));
        worst_site_of(p, t->tid, worst, sizeof(worst));
        if (id == B_P99 && t->loop.p99_ms > bound) {
            model_fmt_ms(m, sizeof(m), t->loop.p99_ms);
            model_fmt_ms(b, sizeof(b), bound);
            add_line(o, "loop iteration p99 of %s exceeds %s (--max-loop-p99-ms): %s%s", m, b, where, worst);
        } else if (id == B_UTIL && t->loop.utilization > bound) {
            add_line(o, "loop utilization of %.3f (%.1f%% busy) exceeds %g (--max-loop-utilization): %s%s",
                     t->loop.utilization, t->loop.utilization * 100, bound, where, worst);
        }
    }
}

static void check_pools(const struct m_process *p, double bound, struct outcome *o)
{
    for (size_t i = 0; i < p->npools; i++) {
        const struct m_pool *pool = &p->pools[i];
        char busy[800] = "", top[700];

        if (pool->saturated_s <= bound)
            continue;
        if (pool->nbusy > 0) {
            stack_top_describe(&pool->busy_in[0].stack, top, sizeof(top));
            snprintf(busy, sizeof(busy), ", workers busy mostly in %s at %s",
                     pool->busy_in[0].call ? pool->busy_in[0].call : "CPU-bound work", top);
        }
        add_line(o, "pool saturated for %.2f s exceeds %g s (--max-saturated-s): pid %d, pool %d (%zu threads, "
                    "%zu saturation span%s)%s", pool->saturated_s, bound, p->pid, pool->id, pool->nthreads,
                 pool->nsaturations, pool->nsaturations == 1 ? "" : "s", busy);
    }
}

/* The longest recorded wait names the thread; the lock's top stack where. */
static void check_locks(const struct m_process *p, double bound, struct outcome *o)
{
    for (size_t i = 0; i < p->nlocks; i++) {
        const struct m_lock *l = &p->locks[i];
        const struct m_lock_wait *worst = NULL;
        char name[128], where[160] = "", top[700], m[32], b[32];

        if (l->wait_max_ms <= bound)
            continue;
        for (size_t j = 0; j < p->nlock_waits; j++)
            if (p->lock_waits[j].object == l->object &&
                (!worst || p->lock_waits[j].duration_ms > worst->duration_ms))
                worst = &p->lock_waits[j];
        if (l->label || l->symbol)
            snprintf(name, sizeof(name), "%s", l->label ? l->label : l->symbol);
        else
            snprintf(name, sizeof(name), "0x%llx", (unsigned long long)l->object);
        sanitize_ascii(name);
        if (worst)
            thread_where(p, worst->tid, where, sizeof(where));
        else
            snprintf(where, sizeof(where), "pid %d", p->pid);
        stack_top_describe(worst ? &worst->stack : &l->stack, top, sizeof(top));
        model_fmt_ms(m, sizeof(m), l->wait_max_ms);
        model_fmt_ms(b, sizeof(b), bound);
        add_line(o, "lock wait of %s exceeds %s (--max-lock-wait-ms): %s, on %s %s (%llu contentions) at %s", m, b,
                 where, l->kind ? l->kind : "lock", name, (unsigned long long)l->contentions, top);
    }
}

static void evaluate(const struct m_process *p, enum bound_id id, double bound, struct outcome *o)
{
    switch (id) {
    case B_STALL:
        check_stalls(p, bound, o);
        break;
    case B_P99:
    case B_UTIL:
        check_loops(p, id, bound, o);
        break;
    case B_SATURATED:
        check_pools(p, bound, o);
        break;
    case B_LOCK_WAIT:
        check_locks(p, bound, o);
        break;
    default:
        break;
    }
}

static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '&')
            fputs("&amp;", f);
        else if (c == '<')
            fputs("&lt;", f);
        else if (c == '>')
            fputs("&gt;", f);
        else if (c == '"')
            fputs("&quot;", f);
        else if (c == '\n')
            fputs("&#10;", f);
        else if (c < 0x20 || c >= 0x7f)
            fputc('?', f);
        else
            fputc(c, f);
    }
}

struct run {
    struct loaded_dumps l;
    char **paths;
    double bound[B_COUNT];
    bool set[B_COUNT];
    struct outcome *out;           /* [process][bound] */
};

static int write_junit(const struct run *r, const char *path)
{
    size_t i, k, tests = 0, failures = 0;
    FILE *f = fopen(path, "we");

    if (!f) {
        fprintf(stderr, "stalltrace: check: %s: %s\n", path, strerror(errno));
        return 2;
    }
    for (i = 0; i < r->l.n; i++)
        for (k = 0; k < B_COUNT; k++)
            if (r->set[k]) {
                const struct outcome *o = &r->out[i * B_COUNT + k];
                tests++;
                failures += o->n > 0;
            }
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(f, "<testsuites name=\"stalltrace check\" tests=\"%zu\" failures=\"%zu\">\n", tests, failures);
    for (i = 0; i < r->l.n; i++) {
        const struct m_process *p = r->l.procs[i];
        size_t nt = 0, nf = 0;
        for (k = 0; k < B_COUNT; k++)
            if (r->set[k]) {
                nt++;
                nf += r->out[i * B_COUNT + k].n > 0;
            }
        fprintf(f, "  <testsuite name=\"");
        xml_text(f, r->paths[i]);
        fprintf(f, "\" tests=\"%zu\" failures=\"%zu\">\n", nt, nf);
        for (k = 0; k < B_COUNT; k++) {
            const struct outcome *o = &r->out[i * B_COUNT + k];
            size_t j;
            if (!r->set[k])
                continue;
            fprintf(f, "    <testcase classname=\"stalltrace.check.pid%d\" name=\"%s &lt;= %g\">", p->pid,
                    bound_info[k].flag, r->bound[k]);
            if (o->n > 0) {
                fprintf(f, "\n      <failure type=\"bound\" message=\"");
                xml_text(f, o->lines[0]);
                fprintf(f, "\">");
                for (j = 0; j < o->n; j++) {
                    xml_text(f, o->lines[j]);
                    fputs(j + 1 < o->n ? "&#10;" : "", f);
                }
                fprintf(f, "</failure>\n    ");
            }
            fprintf(f, "</testcase>\n");
        }
        fprintf(f, "  </testsuite>\n");
    }
    fprintf(f, "</testsuites>\n");
    if (ferror(f) | (fclose(f) != 0)) {
        fprintf(stderr, "stalltrace: check: cannot write %s\n", path);
        return 2;
    }
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: stalltrace check [--max-stall-ms N] [--max-loop-p99-ms N] [--max-loop-utilization R]\n"
               "                        [--max-saturated-s N] [--max-lock-wait-ms N] [--junit FILE] DUMP...\n"
               "exit 0: every bound holds; 1: one does not (one line per violation); 2: bad usage or input\n");
}

int cmd_check(int argc, char **argv)
{
    static const struct option opts[] = {
        {"max-stall-ms", required_argument, NULL, B_STALL},
        {"max-loop-p99-ms", required_argument, NULL, B_P99},
        {"max-loop-utilization", required_argument, NULL, B_UTIL},
        {"max-saturated-s", required_argument, NULL, B_SATURATED},
        {"max-lock-wait-ms", required_argument, NULL, B_LOCK_WAIT},
        {"junit", required_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct run r = {0};
    const char *junit = NULL;
    size_t i, k, violations = 0, nset = 0;
    int c, rc;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c >= 0 && c < B_COUNT) {
            if (!parse_number(optarg, 1e15, &r.bound[c]) || (c == B_UTIL && r.bound[c] > 1)) {
                fprintf(stderr, "stalltrace: check: --%s wants %s, not '%s'\n", bound_info[c].flag,
                        c == B_UTIL ? "a ratio from 0 to 1" : "a non-negative number", optarg);
                return 2;
            }
            r.set[c] = true;
        } else if (c == 'j') {
            junit = optarg;
        } else if (c == 'h') {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "stalltrace: check: bad option '%s' (see stalltrace check --help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    for (k = 0; k < B_COUNT; k++)
        nset += r.set[k];
    if (nset == 0) {
        fprintf(stderr, "stalltrace: check: no bound given (--max-stall-ms, --max-loop-p99-ms, ...)\n");
        return 2;
    }
    if (optind >= argc) {
        fprintf(stderr, "stalltrace: check: no dump given\n");
        return 2;
    }
    r.paths = argv + optind;
    rc = load_dumps(r.paths, (size_t)(argc - optind), NULL, &r.l);
    if (rc != 0)
        return rc;
    r.out = calloc(r.l.n * B_COUNT, sizeof(*r.out));
    if (!r.out) {
        free_loaded_dumps(&r.l);
        fprintf(stderr, "stalltrace: out of memory\n");
        return 2;
    }
    for (i = 0; i < r.l.n; i++)
        for (k = 0; k < B_COUNT; k++)
            if (r.set[k])
                evaluate(r.l.procs[i], (enum bound_id)k, r.bound[k], &r.out[i * B_COUNT + k]);

    for (k = 0; k < B_COUNT; k++)
        for (i = 0; i < r.l.n; i++) {
            const struct outcome *o = &r.out[i * B_COUNT + k];
            for (size_t j = 0; j < o->n; j++)
                printf("%s: %s\n", r.paths[i], o->lines[j]);
            violations += o->n;
        }
    if (violations == 0)
        printf("stalltrace check: every bound holds (%zu bound%s, %zu dump%s)\n", nset, nset == 1 ? "" : "s",
               r.l.n, r.l.n == 1 ? "" : "s");
    rc = violations ? 1 : 0;
    if (junit && write_junit(&r, junit) != 0)
        rc = 2;
    if (fflush(stdout) != 0)
        rc = 2;
    for (i = 0; i < r.l.n * B_COUNT; i++) {
        for (size_t j = 0; j < r.out[i].n; j++)
            free(r.out[i].lines[j]);
        free(r.out[i].lines);
    }
    free(r.out);
    free_loaded_dumps(&r.l);
    return rc;
}

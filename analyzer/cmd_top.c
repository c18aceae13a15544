/* cmd_top.c - `stalltrace top PID|DUMP`: a refreshing view of a running
 * process, read from its dump (read-only) without touching the process. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <glob.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "grow.h"
#include "cmd.h"
#include "report_util.h"
#include "stalltrace/dumpname.h"

#define RECENT_STALLS 6
#define TOP_LOCKS 4
#define MIN_INTERVAL_S 0.1

/* What one read left for the next: the loop counters, to show the last
 * interval's figures. */
struct loop_prev {
    uint32_t tid;
    uint64_t busy_ns;              /* completed iterations plus the running one */
    uint64_t iterations, stalls;
};

struct prev {
    bool have;
    uint64_t start_real_ns;        /* the same recording? */
    uint64_t last_update_ns;
    struct loop_prev *loops;
    size_t nloops;
};

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* ---- Finding the dump of a process ------------------------------------------ */

static bool process_exists(int32_t pid)
{
    char path[64];
    struct stat st;

    snprintf(path, sizeof(path), "/proc/%d", (int)pid);
    return stat(path, &st) == 0;
}

/* Does PATH hold a dump recorded by process PID? Newer recording: larger *start. */
static bool dump_of(const char *path, int32_t pid, uint64_t *start)
{
    int32_t got = 0;

    return dump_peek_start(path, start, &got) == 0 && got == pid;
}

/* The dump the recorder maps shared and writable: exact, whatever name
 * create_exclusive picked. NULL when /proc/PID/maps has none (or is not ours
 * to read). */
static char *dump_from_maps(int32_t pid)
{
    char path[64], line[4608], *best = NULL;
    uint64_t best_start = 0;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    f = fopen(path, "re");
    if (!f)
        return NULL;
    while (fgets(line, sizeof(line), f)) {
        char perms[8], *file, *nl;
        uint64_t start;

        /* start-end perms offset dev inode path */
        if (sscanf(line, "%*s %7s", perms) != 1 || strcmp(perms, "rw-s") != 0)
            continue;
        file = strchr(line, '/');
        if (!file)
            continue;
        if ((nl = strchr(file, '\n')))
            *nl = '\0';
        if (!dump_of(file, pid, &start) || (best && start <= best_start))
            continue;
        free(best);
        best = strdup(file);
        best_start = start;
    }
    fclose(f);
    return best;
}

/* STALLTRACE_OUTPUT from the process's environment, when readable. */
static char *output_from_environ(int32_t pid, bool *disabled)
{
    char path[64], *buf = NULL, *out = NULL;
    size_t len = 0, cap = 0;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
    f = fopen(path, "re");
    if (!f)
        return NULL;
    for (;;) {
        if (len == cap && (cap >= (1u << 20) || GROW(buf, cap, len + 1, 4096) < 0))
            break;
        size_t r = fread(buf + len, 1, cap - len, f);
        if (r == 0)
            break;
        len += r;
    }
    fclose(f);
    for (size_t off = 0; buf && off < len;) {
        const char *var = buf + off;
        size_t n = strnlen(var, len - off);
        if (n > 18 && strncmp(var, "STALLTRACE_OUTPUT=", 18) == 0 && off + n < len)
            out = strndup(var + 18, n - 18);
        if (n >= 19 && strncmp(var, "STALLTRACE_DISABLE=", 19) == 0)
            *disabled = true;
        off += n + 1;
    }
    free(buf);
    return out;
}

/* The recorder's output template as a glob (dumpname.h): %p the pid, %e
 * the executable's name, %t any time; relative to the process's working
 * directory. */
static void template_glob(int32_t pid, const char *tmpl, char *out, size_t cap)
{
    char exe[4096] = "*", link[64], pidstr[16];
    size_t n = 0;
    ssize_t k;

    snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
    k = readlink(link, exe, sizeof(exe) - 1);
    if (k > 0) {
        exe[k] = '\0';
        memmove(exe, frames_basename(exe), strlen(frames_basename(exe)) + 1);
    } else {
        snprintf(exe, sizeof(exe), "*");
    }
    if (tmpl[0] != '/')
        n = (size_t)snprintf(out, cap, "/proc/%d/cwd/", (int)pid);
    snprintf(pidstr, sizeof(pidstr), "%d", (int)pid);
    const struct st_dumpname_values v = {pidstr, exe, "*"};
    st_dumpname_expand(tmpl, &v, 1, out + n, cap - n);
}

/* Glob for PATTERN and for the "NAME.N.dump" the recorder falls back to when
 * the name is taken; the newest dump of PID wins. */
static char *dump_from_template(int32_t pid, const char *pattern)
{
    char alt[4200], *best = NULL;
    const char *pats[2] = {pattern, alt};
    uint64_t best_start = 0;

    st_dumpname_taken_glob(pattern, alt, sizeof(alt));
    for (int i = 0; i < 2 && pats[i]; i++) {
        glob_t g;
        uint64_t start;

        if (glob(pats[i], 0, NULL, &g) != 0)
            continue;
        for (size_t j = 0; j < g.gl_pathc; j++)
            if (dump_of(g.gl_pathv[j], pid, &start) && (!best || start > best_start)) {
                free(best);
                best = strdup(g.gl_pathv[j]);
                best_start = start;
            }
        globfree(&g);
    }
    return best;
}

/* The dump of a running process, or NULL after one line on stderr. */
static char *find_dump(int32_t pid)
{
    char pattern[4200], *path, *tmpl;
    bool disabled = false;

    if (!process_exists(pid)) {
        fprintf(stderr, "stalltrace: top: no process %d\n", (int)pid);
        return NULL;
    }
    if ((path = dump_from_maps(pid)))
        return path;
    tmpl = output_from_environ(pid, &disabled);
    template_glob(pid, tmpl ? tmpl : ST_DUMPNAME_DEFAULT, pattern, sizeof(pattern));
    free(tmpl);
    if ((path = dump_from_template(pid, pattern)))
        return path;
    if (disabled)
        fprintf(stderr, "stalltrace: top: process %d runs with STALLTRACE_DISABLE set: no dump\n", (int)pid);
    else
        fprintf(stderr, "stalltrace: top: no dump of process %d (not mapped by it, none at %s); "
                        "is it running under stalltrace?\n", (int)pid, pattern);
    return NULL;
}

/* ---- One frame --------------------------------------------------------------- */

static const struct loop_prev *prev_loop(const struct prev *pv, uint32_t tid)
{
    for (size_t i = 0; pv->have && i < pv->nloops; i++)
        if (pv->loops[i].tid == tid)
            return &pv->loops[i];
    return NULL;
}

/* Busy time including the iteration running now, so that a stall in
 * progress shows in the interval it happens in, not only when it ends. */
static uint64_t busy_now(const struct dump *d, const struct st_thread *t)
{
    uint64_t end = d->hdr.last_update_ns, start = t->live_iter_start_ns;

    return t->busy_ns + (start && end > start ? end - start : 0);
}

static void thread_label(char *buf, size_t len, const struct m_thread *t)
{
    snprintf(buf, len, "%u %s", t->tid, t->name);
    sanitize_ascii(buf);
}

static void fmt_pct(char *buf, size_t len, double ratio)
{
    if (ratio < 0 || ratio != ratio)
        snprintf(buf, len, "-");
    else
        snprintf(buf, len, "%.1f%%", ratio > 1 ? 100.0 : ratio * 100);
}

static void header(FILE *out, const struct m_process *p, const char *path, double interval_s)
{
    char cmdline[160] = "", state[64], file[512];
    size_t used = 0;

    for (int i = 0; i < p->argc && used + 2 < sizeof(cmdline); i++)
        used += (size_t)snprintf(cmdline + used, sizeof(cmdline) - used, "%s%s", i ? " " : "",
                                 p->argv[i]);
    if (!cmdline[0])
        snprintf(cmdline, sizeof(cmdline), "%s", p->exe ? p->exe : "?");
    sanitize_ascii(cmdline);
    snprintf(file, sizeof(file), "%s", path);
    sanitize_ascii(file);
    if (p->complete)
        snprintf(state, sizeof(state), "ended, recording complete");
    else if (!process_exists(p->pid))
        snprintf(state, sizeof(state), "process gone, recording incomplete");
    else
        snprintf(state, sizeof(state), "live, every %g s", interval_s);
    fprintf(out, "stalltrace top - pid %d: %s\n", p->pid, cmdline);
    fprintf(out, "recorded %.1f s, threshold %g ms, %s%s\n", p->duration_s, p->threshold_ms, state,
            p->dropped ? " (events dropped: ring overwritten)" : "");
    fprintf(out, "dump %s\n", file);
}

static void loops_section(FILE *out, const struct m_process *p, const struct prev *pv, double dt_s)
{
    char label[40], u_now[16], u_all[16], rate[24], p99[24], max[24], stalls[48];
    size_t shown = 0;

    fprintf(out, "\nLOOP THREADS  (util: busy share of the last interval / since start)\n");
    fprintf(out, "  %-22s %8s %8s %9s %11s %9s %9s  %s\n", "thread", "util", "util all", "iter/s",
            "iterations", "p99", "max", "stalls");
    for (size_t i = 0; i < p->nthreads; i++) {
        const struct m_thread *t = &p->threads[i];
        const struct st_thread *raw = dump_thread_by_tid(p, t->tid);
        const struct loop_prev *lp = prev_loop(pv, t->tid);

        if (!t->is_loop || !raw)
            continue;
        shown++;
        thread_label(label, sizeof(label), t);
        snprintf(u_now, sizeof(u_now), "-");
        snprintf(rate, sizeof(rate), "-");
        snprintf(stalls, sizeof(stalls), "%llu", (unsigned long long)raw->stalls);
        if (lp && dt_s > 0) {
            uint64_t busy = busy_now(p->dump, raw);
            fmt_pct(u_now, sizeof(u_now), busy >= lp->busy_ns ? (double)(busy - lp->busy_ns) / 1e9 / dt_s : -1);
            if (raw->iterations >= lp->iterations)
                snprintf(rate, sizeof(rate), "%.0f", (double)(raw->iterations - lp->iterations) / dt_s);
            if (raw->stalls > lp->stalls)
                snprintf(stalls, sizeof(stalls), "%llu (+%llu)", (unsigned long long)raw->stalls,
                         (unsigned long long)(raw->stalls - lp->stalls));
        }
        fmt_pct(u_all, sizeof(u_all), t->loop.utilization);
        model_fmt_ms(p99, sizeof(p99), t->loop.p99_ms);
        model_fmt_ms(max, sizeof(max), t->loop.max_ms);
        fprintf(out, "  %-22.22s %8s %8s %9s %11llu %9s %9s  %s%s\n", label, u_now, u_all, rate,
                (unsigned long long)t->loop.iterations, p99, max, stalls,
                raw->live_iter_start_ns && p->dump->hdr.last_update_ns > raw->live_iter_start_ns &&
                        p->dump->hdr.last_update_ns - raw->live_iter_start_ns >= p->dump->hdr.threshold_ns
                    ? "  STALLED NOW" : "");
    }
    if (!shown)
        fprintf(out, "  (no loop thread seen yet)\n");
}

/* The stack a stall is best described by: its blocking call's, else the
 * middle sample of a CPU-bound one. */
static const struct m_stack *stall_where(const struct m_stall *st)
{
    size_t nsamples;
    const struct m_stack *s = stall_stack(st, &nsamples);

    if (!s && nsamples)
        s = &st->samples[nsamples / 2].stack;
    return s;
}

/* Where a stall is, said by the user's frame (and its caller) when there
 * is one, else the innermost frame worth naming. */
static void stall_place(const struct m_stall *st, char *buf, size_t len)
{
    const struct m_stack *s = stall_where(st);

    buf[0] = '\0';
    if (s && s->n)
        frames_where(s, buf, len);
    if (!buf[0] && s && s->n)
        stack_top_describe(s, buf, len);
    if (!buf[0])
        /* A stall still running has its stack recorded when it ends. */
        snprintf(buf, len, "%s", st->in_progress ? "-" : "(no stack)");
}

static void stalls_section(FILE *out, const struct m_process *p)
{
    char label[40], took[24], where[600];
    size_t first = p->nstalls > RECENT_STALLS ? p->nstalls - RECENT_STALLS : 0;

    fprintf(out, "\nRECENT STALLS  (newest first; %zu in the dump)\n", p->nstalls);
    if (!p->nstalls) {
        fprintf(out, "  (none)\n");
        return;
    }
    /* The one line to read first: the newest stall and the user's frame in it. */
    const struct m_stall *last = &p->stalls[p->nstalls - 1];
    model_fmt_ms(took, sizeof(took), last->duration_ms);
    stall_place(last, where, sizeof(where));
    fprintf(out, "  newest: %s in %s at %.1f s, at %s\n", took, last->call ? last->call : "CPU-bound code",
            last->start_s, where);
    fprintf(out, "  %9s  %-22s %9s  %-20s %s\n", "at", "thread", "took", "call", "where");
    for (size_t i = p->nstalls; i-- > first;) {
        const struct m_stall *st = &p->stalls[i];
        const struct m_thread *t = thread_by_tid(p, st->tid);

        if (t)
            thread_label(label, sizeof(label), t);
        else
            snprintf(label, sizeof(label), "%u", st->tid);
        model_fmt_ms(took, sizeof(took), st->duration_ms);
        stall_place(st, where, sizeof(where));
        fprintf(out, "  %8.1fs  %-22.22s %9s  %-20s %s%s\n", st->start_s, label, took,
                st->call ? st->call : "(cpu)", where, st->in_progress ? "  (still running)" : "");
    }
}

static const struct st_object *object_at(const struct dump *d, uint64_t addr)
{
    for (uint32_t i = 0; i < d->nobjects; i++)
        if (d->objects[i].addr == addr)
            return &d->objects[i];
    return NULL;
}

/* Per-task queue wait, where the model knows it (annotated queues, the
 * Python hook); "~" marks an estimate. */
static void queue_wait_text(char *buf, size_t len, const struct m_dist *w)
{
    char p50[24], p99[24], max[24];

    if (!w->known || !w->count) {
        snprintf(buf, len, "-");
        return;
    }
    model_fmt_ms(p50, sizeof(p50), w->p50_ms);
    model_fmt_ms(p99, sizeof(p99), w->p99_ms);
    model_fmt_ms(max, sizeof(max), w->max_ms);
    snprintf(buf, len, "%sp50 %s, p99 %s, max %s (%llu tasks)", w->exact ? "" : "~", p50, p99, max,
             (unsigned long long)w->count);
}

/* One line a pool: what it is, busy/total threads now and whether it is
 * saturated now, then its figures since the start. */
static void pools_section(FILE *out, const struct m_process *p)
{
    char what[64], busy[48], sat[40], ratio[16], wait[128];

    if (!p->npools)
        return;
    fprintf(out, "\nPOOLS\n");
    for (size_t i = 0; i < p->npools; i++) {
        const struct m_pool *pool = &p->pools[i];
        uint64_t live = 0, idle = 0;
        bool saturated_now = false;

        /* Busy now, from the recorder's live counts: live members not
         * parked idle on the pool's work queue(s). */
        for (size_t j = 0; j < pool->nobjects; j++) {
            const struct st_object *o = object_at(p->dump, pool->objects[j]);
            if (!o)
                continue;
            live += o->live_members;
            idle += o->idle < o->live_members ? o->idle : o->live_members;
            saturated_now |= o->live_saturated_since_ns != 0 && o->live_members > 0;
        }
        saturated_now &= !p->complete;
        uint64_t total = pool->max_threads > live ? pool->max_threads : live;
        snprintf(what, sizeof(what), "%s pool %d", pool->kind, pool->id);
        if (p->complete)
            snprintf(busy, sizeof(busy), "ended, %zu threads", pool->nthreads);  /* its workers are gone */
        else
            snprintf(busy, sizeof(busy), "%llu/%llu busy", (unsigned long long)(live - idle),
                     (unsigned long long)total);
        snprintf(sat, sizeof(sat), "%s", saturated_now ? "SATURATED NOW" : "");
        fmt_pct(ratio, sizeof(ratio), pool->busy_ratio);
        queue_wait_text(wait, sizeof(wait), &pool->queue_wait);
        fprintf(out, "  %-18.18s %-17s %-13s saturated %.1f s in all, busy %s, queue wait %s\n", what, busy, sat,
                pool->saturated_s, ratio, wait);
    }
}

static void locks_section(FILE *out, const struct m_process *p)
{
    char name[96], total[24], max[24], where[256];

    if (!p->nlocks)
        return;
    fprintf(out, "\nLOCKS  (most wait first)\n");
    fprintf(out, "  %-24s %-6s %8s %9s %9s  %s\n", "lock", "kind", "waits", "total", "max", "where");
    for (size_t i = 0, shown = 0; i < p->nlocks && shown < TOP_LOCKS; i++) {
        const struct m_lock *l = &p->locks[i];
        if (l->idle)
            continue;          /* a runtime thread's own sleep */
        shown++;

        if (l->label)
            snprintf(name, sizeof(name), "%s", l->label);
        else if (l->symbol)
            snprintf(name, sizeof(name), "%s", l->symbol);
        else
            snprintf(name, sizeof(name), "0x%llx", (unsigned long long)l->object);
        sanitize_ascii(name);
        model_fmt_ms(total, sizeof(total), l->wait_total_ms);
        model_fmt_ms(max, sizeof(max), l->wait_max_ms);
        if (l->stack.n)
            stack_top_describe(&l->stack, where, sizeof(where));
        else
            snprintf(where, sizeof(where), "-");
        fprintf(out, "  %-24.24s %-6s %8llu %9s %9s  %s\n", name, l->kind ? l->kind : "?",
                (unsigned long long)l->contentions, total, max, where);
    }
}

/* Remember this read's loop counters for the next frame. */
static void remember(struct prev *pv, const struct m_process *p)
{
    const struct dump *d = p->dump;

    free(pv->loops);
    pv->loops = calloc(d->nthreads + 1, sizeof(*pv->loops));
    pv->nloops = 0;
    pv->have = pv->loops != NULL;
    pv->start_real_ns = d->hdr.start_real_ns;
    pv->last_update_ns = d->hdr.last_update_ns;
    for (uint32_t i = 0; pv->loops && i < d->nthreads; i++) {
        const struct st_thread *t = &d->threads[i];
        if (!(t->flags & ST_THREAD_LOOP))
            continue;
        pv->loops[pv->nloops++] = (struct loop_prev){
            .tid = t->tid, .busy_ns = busy_now(d, t), .iterations = t->iterations, .stalls = t->stalls};
    }
}

/* Write one frame into a malloc'd string. */
static char *frame(const struct m_process *p, const char *path, const struct prev *pv, double interval_s)
{
    char *text = NULL;
    size_t len = 0;
    double dt_s = 0;
    FILE *out = open_memstream(&text, &len);

    if (!out)
        return NULL;
    if (pv->have && pv->start_real_ns == p->dump->hdr.start_real_ns &&
        p->dump->hdr.last_update_ns > pv->last_update_ns)
        dt_s = (double)(p->dump->hdr.last_update_ns - pv->last_update_ns) / 1e9;
    header(out, p, path, interval_s);
    loops_section(out, p, dt_s > 0 ? pv : &(struct prev){0}, dt_s);
    stalls_section(out, p);
    pools_section(out, p);
    locks_section(out, p);
    if (fclose(out) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* On a terminal: home, clear, and lines cut to its width. */
static void show(const char *text, bool tty)
{
    struct winsize ws;
    int cols = 0;

    if (!tty) {
        fputs(text, stdout);
        fflush(stdout);
        return;
    }
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        cols = ws.ws_col;
    fputs("\033[H\033[2J", stdout);
    for (const char *line = text; *line;) {
        const char *nl = strchr(line, '\n');
        int n = nl ? (int)(nl - line) : (int)strlen(line);
        fprintf(stdout, "%.*s\n", cols && n > cols ? cols : n, line);
        line += n + (nl ? 1 : 0);
    }
    fflush(stdout);
}

static void sleep_s(double s)
{
    struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};

    while (!stop_requested && nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ---- The command --------------------------------------------------------------- */

struct view {
    struct dump *dump;
    struct m_process *proc;
};

static void view_free(struct view *v)
{
    model_free(v->proc);
    dump_free(v->dump);
    v->proc = NULL;
    v->dump = NULL;
}

static int view_load(struct view *v, const char *path)
{
    struct model_options opt = {.threshold_ms = -1};
    char *err = NULL;

    view_free(v);
    v->dump = dump_open_path(path, &err);
    if (!v->dump) {
        fprintf(stderr, "stalltrace: top: %s\n", err ? err : "out of memory");
        free(err);
        return 2;
    }
    v->proc = model_build(v->dump, &opt);
    if (!v->proc) {
        fprintf(stderr, "stalltrace: top: %s: out of memory\n", path);
        return 2;
    }
    return 0;
}

static bool is_pid(const char *s)
{
    size_t n = strspn(s, "0123456789");

    return n > 0 && n < 10 && s[n] == '\0';
}

int cmd_top(int argc, char **argv)
{
    static const struct option opts[] = {
        {"interval", required_argument, NULL, 'i'},
        {"once", no_argument, NULL, '1'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct sigaction sa = {.sa_handler = on_stop};
    struct view v = {0};
    struct prev pv = {0};
    double interval = 1.0;
    bool once = false, tty = isatty(STDOUT_FILENO), by_pid = false;
    char *path = NULL;
    int32_t pid = 0;
    int c, rc = 0;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "i:1h", opts, NULL)) != -1) {
        switch (c) {
        case 'i':
            if (!parse_number(optarg, 1e15, &interval) || interval < MIN_INTERVAL_S || interval > 3600) {
                fprintf(stderr, "stalltrace: top: --interval wants seconds (%g to 3600), not '%s'\n",
                        MIN_INTERVAL_S, optarg);
                return 2;
            }
            break;
        case '1':
            once = true;
            break;
        case 'h':
            printf("usage: stalltrace top PID|DUMP [--interval S] [--once]\n"
                   "  refreshing view of a process recorded by stalltrace, read from its dump;\n"
                   "  --once prints one frame (its interval figures sampled over --interval)\n");
            return 0;
        default:
            fprintf(stderr, "stalltrace: top: bad option '%s' (see stalltrace top --help)\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "stalltrace: top: give one PID or DUMP (see stalltrace top --help)\n");
        return 2;
    }
    /* Digits name a process when one exists; anything else is a dump path. */
    const char *arg = argv[optind];
    struct stat st;
    if (is_pid(arg) && (process_exists((int32_t)atol(arg)) || stat(arg, &st) != 0)) {
        by_pid = true;
        pid = (int32_t)atol(arg);
        if (!(path = find_dump(pid)))
            return 2;
    } else {
        if (stat(arg, &st) != 0) {
            fprintf(stderr, "stalltrace: top: %s: %s\n", arg, strerror(errno));
            return 2;
        }
        path = strdup(arg);
        if (!path)
            return 2;
    }
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    if ((rc = view_load(&v, path)) != 0)
        goto out;
    /* --once: sample the interval figures over one interval first. */
    if (once && !v.proc->complete && process_exists(v.proc->pid)) {
        remember(&pv, v.proc);
        sleep_s(interval);
        if ((rc = view_load(&v, path)) != 0)
            goto out;
    }
    for (;;) {
        char *text = frame(v.proc, path, &pv, interval);
        if (!text) {
            fprintf(stderr, "stalltrace: top: out of memory\n");
            rc = 2;
            break;
        }
        show(text, tty);
        free(text);
        /* Nothing more will change once the recording ended. */
        if (once || stop_requested || v.proc->complete || !process_exists(v.proc->pid))
            break;
        remember(&pv, v.proc);
        sleep_s(interval);
        if (stop_requested)
            break;
        if (!tty)
            fputc('\n', stdout);
        if ((rc = view_load(&v, path)) != 0)
            break;
        /* After an exec the new image records to a dump of its own. */
        if (by_pid && v.proc->complete && v.proc->end_reason == ST_END_EXEC && process_exists(pid)) {
            char *next = dump_from_maps(pid);
            if (next && strcmp(next, path) != 0) {
                free(path);
                path = next;
                if ((rc = view_load(&v, path)) != 0)
                    break;
            } else {
                free(next);
            }
        }
    }
out:
    view_free(&v);
    free(pv.loops);
    free(path);
    return rc;
}

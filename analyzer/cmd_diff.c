/* cmd_diff.c - `stalltrace diff BASE NEW`: what got better or worse between
 * two recordings, per loop thread, stall site, pool and lock; --fail-over. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "cmd.h"
#include "report_util.h"

/* A figure of one entity (a loop thread, a stall site) in both dumps. */
struct row {
    char scope[16];                /* "loop", "site" */
    char *key;                     /* how the entity is matched */
    char *label;                   /* how a person reads it */
    const char *figure;            /* "stalls", "p99_ms", ... */
    double base, new_;
    double floor;                  /* smaller changes are noise, never "worse" */
    bool gated;                    /* bigger is worse (iterations are not) */
};

struct table {
    struct row *rows;
    size_t n, cap;
};

struct entity {
    char *key, *label;
    double v[6];                   /* figures, in the order of the scope's list */
};

struct entities {
    struct entity *e;
    size_t n, cap;
};

static const char *loop_figures[] = {"stalls", "stalled_ms", "p99_ms", "max_ms", "utilization", "iterations"};
static const double loop_floors[] = {1, 1, 1, 1, 0.01, 0};
static const char *site_figures[] = {"stalls", "stalled_ms", "max_ms"};
static const double site_floors[] = {1, 1, 1};
static const char *pool_figures[] = {"saturated_ms", "saturations", "busy_ratio", "threads"};
static const double pool_floors[] = {1, 1, 0.01, 0};
static const char *lock_figures[] = {"wait_total_ms", "wait_max_ms", "contentions"};
static const double lock_floors[] = {1, 1, 1};

static struct entity *entity_add(struct entities *s, char *key, char *label)
{
    if (!key || !label)
        goto fail;
    if (GROW(s->e, s->cap, s->n + 1, 16) < 0)
        goto fail;
    memset(&s->e[s->n], 0, sizeof(s->e[0]));
    s->e[s->n].key = key;
    s->e[s->n].label = label;
    return &s->e[s->n++];
fail:
    free(key);
    free(label);
    return NULL;
}

static struct entity *entity_find(struct entities *s, const char *key)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->e[i].key, key) == 0)
            return &s->e[i];
    return NULL;
}

static void entities_free(struct entities *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->e[i].key);
        free(s->e[i].label);
    }
    free(s->e);
}

/* Loop threads are matched by role and name (the main thread as itself):
 * tids differ between runs. The n-th thread of a name matches the n-th. */
static int collect_loops(const struct m_process *p, struct entities *out)
{
    for (size_t i = 0; i < p->nthreads; i++) {
        const struct m_thread *t = &p->threads[i];
        char name[ST_NAME_MAX + 1], *key, *label;
        int nth = 0;

        if (!t->is_loop)
            continue;
        snprintf(name, sizeof(name), "%s", t->name);
        sanitize_ascii(name);
        for (size_t j = 0; j < i; j++)
            nth += p->threads[j].is_loop && (int32_t)p->threads[j].tid != p->pid &&
                   strcmp(p->threads[j].name, t->name) == 0;
        if ((int32_t)t->tid == p->pid) {
            key = strdup("main");
            if (asprintf(&label, "main thread (%s)", name) < 0)
                label = NULL;
        } else {
            if (asprintf(&key, "loop:%s#%d", name, nth) < 0)
                key = NULL;
            if (asprintf(&label, "loop thread %s%s", name, nth ? " (another)" : "") < 0)
                label = NULL;
        }
        struct entity *e = entity_add(out, key, label);
        if (!e)
            return -1;
        for (size_t k = 0; k < p->nstalls; k++)
            if (p->stalls[k].tid == t->tid) {
                e->v[0]++;
                e->v[1] += p->stalls[k].duration_ms;
            }
        e->v[2] = t->loop.p99_ms;
        e->v[3] = t->loop.max_ms;
        e->v[4] = t->loop.utilization;
        e->v[5] = (double)t->loop.iterations;
    }
    return 0;
}

/* Sites are matched by call and the names of their frames (addresses move
 * between runs); a site's label is its call and the frame worth reading. */
static int collect_sites(const struct m_process *p, struct entities *out)
{
    for (size_t i = 0; i < p->nsites; i++) {
        const struct m_site *s = &p->sites[i];
        size_t len = 64 + s->stack.n * 130, used;
        char *key = malloc(len), *label = NULL, frame[128], top[600];

        if (!key)
            return -1;
        used = (size_t)snprintf(key, len, "%s", s->call ? s->call : "(cpu)");
        for (size_t j = 0; j < s->stack.n && used < len; j++) {
            frame_label(s->stack.frames[j], frame, sizeof(frame));
            used += (size_t)snprintf(key + used, len - used, ";%s", frame);
        }
        stack_top_describe(&s->stack, top, sizeof(top));
        if (asprintf(&label, "%s at %s", s->call ? s->call : "CPU-bound work", top) < 0)
            label = NULL;
        struct entity *e = entity_find(out, key);
        if (e) {                   /* frames that differ only in line numbers */
            free(key);
            free(label);
        } else if (!(e = entity_add(out, key, label))) {
            return -1;
        }
        e->v[0] += (double)s->count;
        e->v[1] += s->total_ms;
        if (s->max_ms > e->v[2])
            e->v[2] = s->max_ms;
    }
    return 0;
}

/* Pools are matched by their order of appearance (ids are given in that
 * order); locks by name (GIL, data symbol), else by where they were waited. */
static int collect_pools(const struct m_process *p, struct entities *out)
{
    for (size_t i = 0; i < p->npools; i++) {
        const struct m_pool *pool = &p->pools[i];
        char *key, *label;
        if (asprintf(&key, "pool#%zu", i) < 0)
            key = NULL;
        if (asprintf(&label, "pool %d (%s, %zu threads)", pool->id, pool->kind ? pool->kind : "?",
                     pool->nthreads) < 0)
            label = NULL;
        struct entity *e = entity_add(out, key, label);
        if (!e)
            return -1;
        e->v[0] = pool->saturated_s * 1e3;
        e->v[1] = (double)pool->nsaturations;
        e->v[2] = pool->busy_ratio;
        e->v[3] = (double)pool->nthreads;
    }
    return 0;
}

static int collect_locks(const struct m_process *p, struct entities *out)
{
    for (size_t i = 0; i < p->nlocks; i++) {
        const struct m_lock *l = &p->locks[i];
        char name[700], *key, *label;
        if (l->label || l->symbol)
            snprintf(name, sizeof(name), "%s", l->label ? l->label : l->symbol);
        else
            stack_top_describe(&l->stack, name, sizeof(name));
        sanitize_ascii(name);
        if (asprintf(&key, "%s:%s", l->kind ? l->kind : "?", name) < 0)
            key = NULL;
        if (asprintf(&label, "%s %s", l->kind ? l->kind : "lock", name) < 0)
            label = NULL;
        struct entity *e = entity_find(out, key ? key : "");
        if (e) {
            free(key);
            free(label);
        } else if (!(e = entity_add(out, key, label))) {
            return -1;
        }
        e->v[0] += l->wait_total_ms;
        if (l->wait_max_ms > e->v[1])
            e->v[1] = l->wait_max_ms;
        e->v[2] += (double)l->contentions;
    }
    return 0;
}

static int add_row(struct table *t, const char *scope, const char *key, const char *label,
                   const char *figure, double base, double new_, double floor)
{
    if (GROW(t->rows, t->cap, t->n + 1, 32) < 0)
        return -1;
    struct row *r = &t->rows[t->n];
    snprintf(r->scope, sizeof(r->scope), "%s", scope);
    r->key = strdup(key);
    r->label = strdup(label);
    if (!r->key || !r->label) {
        free(r->key);
        free(r->label);
        return -1;
    }
    r->figure = figure;
    r->base = base;
    r->new_ = new_;
    r->floor = floor;
    r->gated = floor > 0;
    t->n++;
    return 0;
}

/* Rows for every figure that changed, of entities in either dump. */
static int compare(struct table *t, const char *scope, struct entities *b, struct entities *n,
                   const char **figures, const double *floors, size_t nfig)
{
    static const double zero[6];

    for (size_t pass = 0; pass < 2; pass++) {
        struct entities *from = pass ? n : b, *other = pass ? b : n;
        for (size_t i = 0; i < from->n; i++) {
            struct entity *e = &from->e[i], *o = entity_find(other, e->key);
            if (pass && o)
                continue;          /* already compared from the base side */
            const double *bv = pass ? (o ? o->v : zero) : e->v;
            const double *nv = pass ? e->v : (o ? o->v : zero);
            for (size_t f = 0; f < nfig; f++)
                if (bv[f] != nv[f] && add_row(t, scope, e->key, e->label, figures[f], bv[f], nv[f], floors[f]) < 0)
                    return -1;
        }
    }
    return 0;
}

static double change_pct(const struct row *r)
{
    if (r->base == 0)
        return r->new_ > 0 ? INFINITY : 0;
    return (r->new_ - r->base) / r->base * 100;
}

static bool is_worse(const struct row *r, double pct)
{
    return r->gated && r->new_ - r->base >= r->floor && change_pct(r) > pct;
}

static void fmt_value(char *buf, size_t len, const struct row *r, double v)
{
    if (strstr(r->figure, "_ms"))
        model_fmt_ms(buf, len, v);
    else if (strcmp(r->figure, "utilization") == 0 || strcmp(r->figure, "busy_ratio") == 0)
        snprintf(buf, len, "%.1f%%", v * 100);
    else
        snprintf(buf, len, "%.0f", v);
}

static void print_text(FILE *out, const struct table *t, const char *base, const char *new_, double fail_over)
{
    char a[32], b[32], pct[32];
    const char *scope = "";

    fprintf(out, "stalltrace diff: %s -> %s\n", base, new_);
    if (t->n == 0) {
        fprintf(out, "No change in any loop thread, stall site, pool or lock.\n");
        return;
    }
    for (size_t i = 0; i < t->n; i++) {
        const struct row *r = &t->rows[i];
        if (strcmp(scope, r->scope) != 0) {
            scope = r->scope;
            fprintf(out, "\n%s\n", strcmp(scope, "loop") == 0   ? "Loop threads"
                                   : strcmp(scope, "site") == 0 ? "Stall sites"
                                   : strcmp(scope, "pool") == 0 ? "Thread pools"
                                                                : "Locks");
        }
        if (i == 0 || strcmp(t->rows[i - 1].key, r->key) != 0 || strcmp(t->rows[i - 1].scope, r->scope) != 0)
            fprintf(out, "  %s\n", r->label);
        double c = change_pct(r);
        fmt_value(a, sizeof(a), r, r->base);
        fmt_value(b, sizeof(b), r, r->new_);
        if (isinf(c))
            snprintf(pct, sizeof(pct), "new");
        else
            snprintf(pct, sizeof(pct), "%+.1f%%", c);
        fprintf(out, "    %-12s %10s -> %-10s %9s%s\n", r->figure, a, b, pct,
                fail_over >= 0 && is_worse(r, fail_over) ? "  WORSE" : "");
    }
}

static int print_json(FILE *out, const struct table *t, const char *base, const char *new_, double fail_over)
{
    json_t *doc = json_object(), *a = json_array();

    json_object_set_new(doc, "format", json_string("stalltrace-diff"));
    json_object_set_new(doc, "version", json_integer(1));
    json_object_set_new(doc, "base", json_string(base));
    json_object_set_new(doc, "new", json_string(new_));
    json_object_set_new(doc, "fail_over_pct", fail_over >= 0 ? json_real(fail_over) : json_null());
    for (size_t i = 0; i < t->n; i++) {
        const struct row *r = &t->rows[i];
        double c = change_pct(r);
        char key[512];
        snprintf(key, sizeof(key), "%s", r->label);
        sanitize_ascii(key);
        json_array_append_new(a, json_pack("{s:s,s:s,s:s,s:f,s:f,s:o,s:b}", "scope", r->scope, "entity", key,
                                           "figure", r->figure, "base", r->base, "new", r->new_, "change_pct",
                                           isinf(c) ? json_null() : json_real(round(c * 10) / 10), "worse",
                                           fail_over >= 0 && is_worse(r, fail_over)));
    }
    json_object_set_new(doc, "changes", a);
    int rc = json_dumpf(doc, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
    fputc('\n', out);
    json_decref(doc);
    return rc;
}

int cmd_diff(int argc, char **argv)
{
    static const struct option opts[] = {
        {"format", required_argument, NULL, 'f'},
        {"fail-over", required_argument, NULL, 'F'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *format = "text";
    double fail_over = -1;
    struct loaded_dumps l = {0};
    struct entities lb = {0}, ln = {0}, sb = {0}, sn = {0}, pb = {0}, pn = {0}, kb = {0}, kn = {0};
    struct table t = {0};
    char *paths[2];
    int c, rc = 0, npaths = 0;

    optind = 1;
    opterr = 0;
    /* Options may follow the dumps: `diff a.dump b.dump --fail-over 10`. */
    while ((c = getopt_long(argc, argv, "-f:h", opts, NULL)) != -1) {
        if (c == 1) {
            if (npaths == 2) {
                fprintf(stderr, "stalltrace: diff: wants exactly two dumps, BASE and NEW\n");
                return 2;
            }
            paths[npaths++] = optarg;
        } else if (c == 'f') {
            format = optarg;
        } else if (c == 'F') {
            if (!parse_number(optarg, 1e15, &fail_over)) {
                fprintf(stderr, "stalltrace: diff: --fail-over wants a percentage, not '%s'\n", optarg);
                return 2;
            }
        } else if (c == 'h') {
            printf("usage: stalltrace diff BASE.dump NEW.dump [--format text|json] [--fail-over PCT]\n"
                   "exit 1 with --fail-over when a figure got worse by more than PCT percent\n");
            return 0;
        } else {
            fprintf(stderr, "stalltrace: diff: bad option '%s' (see stalltrace diff --help)\n", argv[optind - 1]);
            return 2;
        }
    }
    if (strcmp(format, "text") != 0 && strcmp(format, "json") != 0) {
        fprintf(stderr, "stalltrace: diff: unknown format '%s' (text or json)\n", format);
        return 2;
    }
    if (npaths != 2) {
        fprintf(stderr, "stalltrace: diff: wants exactly two dumps, BASE and NEW\n");
        return 2;
    }
    if ((rc = load_dumps(paths, 2, NULL, &l)) != 0)
        return rc;
    if (collect_loops(l.procs[0], &lb) < 0 || collect_loops(l.procs[1], &ln) < 0 ||
        collect_sites(l.procs[0], &sb) < 0 || collect_sites(l.procs[1], &sn) < 0 ||
        compare(&t, "loop", &lb, &ln, loop_figures, loop_floors, 6) < 0 ||
        compare(&t, "site", &sb, &sn, site_figures, site_floors, 3) < 0 ||
        collect_pools(l.procs[0], &pb) < 0 || collect_pools(l.procs[1], &pn) < 0 ||
        collect_locks(l.procs[0], &kb) < 0 || collect_locks(l.procs[1], &kn) < 0 ||
        compare(&t, "pool", &pb, &pn, pool_figures, pool_floors, 4) < 0 ||
        compare(&t, "lock", &kb, &kn, lock_figures, lock_floors, 3) < 0) {
        fprintf(stderr, "stalltrace: out of memory\n");
        rc = 2;
        goto out;
    }
    if (strcmp(format, "json") == 0)
        rc = print_json(stdout, &t, paths[0], paths[1], fail_over) ? 2 : 0;
    else
        print_text(stdout, &t, paths[0], paths[1], fail_over);
    if (rc == 0 && fail_over >= 0) {
        size_t worse = 0;
        for (size_t i = 0; i < t.n; i++)
            if (is_worse(&t.rows[i], fail_over)) {
                char a[32], b[32];
                fmt_value(a, sizeof(a), &t.rows[i], t.rows[i].base);
                fmt_value(b, sizeof(b), &t.rows[i], t.rows[i].new_);
                fprintf(stderr, "stalltrace: diff: worse by more than %g%%: %s: %s %s -> %s\n", fail_over,
                        t.rows[i].label, t.rows[i].figure, a, b);
                worse++;
            }
        rc = worse ? 1 : 0;
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "stalltrace: diff: cannot write: %s\n", strerror(errno));
        rc = 2;
    }
out:
    for (size_t i = 0; i < t.n; i++) {
        free(t.rows[i].key);
        free(t.rows[i].label);
    }
    free(t.rows);
    entities_free(&lb);
    entities_free(&ln);
    entities_free(&sb);
    entities_free(&sn);
    entities_free(&pb);
    entities_free(&pn);
    entities_free(&kb);
    entities_free(&kn);
    free_loaded_dumps(&l);
    return rc;
}

/* metrics_scrape.c - what one scrape of `stalltrace metrics` exposes: each
 * matched dump read and modelled alone, finished ones kept as their text. */
#include <errno.h>
#include <glob.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "grow.h"
#include "dump.h"
#include "model.h"
#include "report.h"
#include "metrics_scrape.h"
#include "metrics_trust.h"

/* A file a pattern matched. A finished dump never changes again: its
 * figures are kept as exposition text, and its dump, model and fds are let
 * go, so a server with hundreds of finished dumps stays small. */
struct source {
    char *path;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
    char *figures;                 /* a finished dump's families, "# EOF" cut */
    size_t figures_len;
    int32_t pid;
    uint64_t start_ns;
    unsigned owner;
    char *error;                   /* the last error reported for it */
    bool seen;                     /* matched by the current scrape */
};

/* One dump a scrape exposes. */
struct entry {
    int32_t pid;
    uint64_t start_ns;
    unsigned owner;
    dev_t dev;
    ino_t ino;
    struct timespec ctime;         /* set by the kernel, not by the writer */
    size_t conflicts;              /* other trusted dumps claiming its pid */
    const char *why;               /* how it won over them */
    const char *text;
    size_t len;
    char *own;                     /* text rendered for this scrape alone */
    const char *path;
};

struct scraper {
    char **patterns;
    int npatterns;
    struct source *sources;
    size_t nsources;
    bool cancelled;                /* atomic: set by scraper_cancel */
};

void scraper_cancel(struct scraper *s)
{
    __atomic_store_n(&s->cancelled, true, __ATOMIC_RELEASE);
}

struct scraper *scraper_new(char **patterns, int npatterns)
{
    struct scraper *s = calloc(1, sizeof(*s));

    if (s) {
        s->patterns = patterns;
        s->npatterns = npatterns;
    }
    return s;
}

static void source_forget(struct source *src)
{
    free(src->path);
    free(src->figures);
    free(src->error);
}

void scraper_free(struct scraper *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nsources; i++)
        source_forget(&s->sources[i]);
    free(s->sources);
    free(s);
}

static struct source *source_for(struct scraper *s, const char *path)
{
    for (size_t i = 0; i < s->nsources; i++)
        if (strcmp(s->sources[i].path, path) == 0)
            return &s->sources[i];
    if (GROW_ONE(s->sources, s->nsources) < 0)
        return NULL;
    struct source *src = &s->sources[s->nsources];
    memset(src, 0, sizeof(*src));
    if (!(src->path = strdup(path)))
        return NULL;
    s->nsources++;
    return src;
}

static bool same_file(const struct source *src, const struct stat *st)
{
    return st->st_dev == src->dev && st->st_ino == src->ino && st->st_size == src->size &&
           st->st_mtim.tv_sec == src->mtime.tv_sec && st->st_mtim.tv_nsec == src->mtime.tv_nsec;
}

/* Say a file's error once, not on every scrape: a dump being created or a
 * foreign file matched by a glob stays as it is for a while. */
static void note_error(struct source *src, char *err)
{
    if (!src->error || !err || strcmp(src->error, err) != 0)
        fprintf(stderr, "stalltrace: metrics: skipping %s\n", err ? err : "a dump: out of memory");
    free(src->error);
    src->error = err;
}

static char *line(const char *fmt, const char *a, const char *b)
{
    char *msg = NULL;

    if (asprintf(&msg, fmt, a, b) < 0)
        return NULL;
    return msg;
}

/* The families of one dump's model, "# EOF" cut. */
static int render_one(struct m_process *p, char **text, size_t *len)
{
    FILE *out = open_memstream(text, len);

    if (!out)
        return -1;
    if (report_openmetrics(out, &p, 1, NULL) != 0 || fclose(out) != 0) {
        free(*text);
        *text = NULL;
        return -1;
    }
    if (*len >= 6 && memcmp(*text + *len - 6, "# EOF\n", 6) == 0)
        (*text)[*len -= 6] = '\0';
    return 0;
}

/* Fill *e for one matched path. 1: exposed, 0: skipped (said once), -1: the
 * scrape fails, *fatal set. */
static int scrape_source(struct source *src, struct entry *e, char **fatal)
{
    struct model_options opt = {.threshold_ms = -1};
    struct stat st;
    char *err = NULL;

    memset(e, 0, sizeof(*e));
    e->path = src->path;
    if (lstat(src->path, &st) < 0) {
        note_error(src, line("%s: %s", src->path, strerror(errno)));
        return 0;
    }
    e->dev = st.st_dev;
    e->ino = st.st_ino;
    e->ctime = st.st_ctim;
    if (src->figures && same_file(src, &st))
        goto cached;
    free(src->figures);
    src->figures = NULL;
    errno = 0;
    struct dump *d = dump_open_path(src->path, &err);
    if (!d) {
        if (errno == EMFILE || errno == ENFILE) {
            *fatal = err;
            return -1;
        }
        note_error(src, err);
        return 0;
    }
    free(src->error);
    src->error = NULL;
    struct m_process *p = model_build(d, &opt);
    char *text = NULL;
    size_t len = 0;
    int rc = p ? render_one(p, &text, &len) : -1;
    bool complete = !d->live;
    e->pid = d->proc.pid;
    e->start_ns = d->hdr.start_real_ns;
    e->owner = d->owner;
    model_free(p);
    dump_free(d);
    if (rc < 0) {
        *fatal = line("%s: out of memory%s", src->path, "");
        return -1;
    }
    if (!complete) {
        e->text = e->own = text;
        e->len = len;
        return 1;
    }
    src->figures = text;
    src->figures_len = len;
    src->pid = e->pid;
    src->start_ns = e->start_ns;
    src->owner = e->owner;
    src->dev = st.st_dev;
    src->ino = st.st_ino;
    src->size = st.st_size;
    src->mtime = st.st_mtim;
    src->ctime = st.st_ctim;
cached:
    e->pid = src->pid;
    e->start_ns = src->start_ns;
    e->owner = src->owner;
    e->text = src->figures;
    e->len = src->figures_len;
    return 1;
}

/* ---- Merging: each text has the same families in the same order -------- */

struct family {
    const char *head, *body;       /* "# HELP ...\n# TYPE ...\n", then samples */
    size_t head_len, body_len;
};

static const char *next_line(const char *p, const char *end)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    return nl ? nl + 1 : end;
}

/* Split text into families at each "# HELP" line. */
static int split(const char *text, size_t len, struct family **fams, size_t *n, size_t *cap)
{
    const char *p = text, *end = text + len;

    *n = 0;
    while (p < end) {
        if (strncmp(p, "# HELP ", 7) != 0) {
            p = next_line(p, end);     /* nothing before the first family */
            continue;
        }
        if (GROW(*fams, *cap, *n + 1, 32) < 0)
            return -1;
        struct family *f = &(*fams)[(*n)++];
        f->head = p;
        p = next_line(p, end);
        if (p < end && strncmp(p, "# TYPE ", 7) == 0)
            p = next_line(p, end);
        f->head_len = (size_t)(p - f->head);
        f->body = p;
        while (p < end && strncmp(p, "# HELP ", 7) != 0)
            p = next_line(p, end);
        f->body_len = (size_t)(p - f->body);
    }
    return 0;
}

static int merge(FILE *out, const struct entry *es, size_t n)
{
    struct family *first = NULL, *other = NULL;
    size_t nfirst = 0, capfirst = 0, nother = 0, capother = 0;
    int rc = 0;

    if (n == 0)
        return 0;
    if (split(es[0].text, es[0].len, &first, &nfirst, &capfirst) < 0) {
        rc = -1;
        goto out;
    }
    for (size_t f = 0; f < nfirst; f++) {
        fwrite(first[f].head, 1, first[f].head_len, out);
        fwrite(first[f].body, 1, first[f].body_len, out);
        for (size_t i = 1; i < n; i++) {
            if (split(es[i].text, es[i].len, &other, &nother, &capother) < 0) {
                rc = -1;
                goto out;
            }
            if (f < nother && other[f].head_len == first[f].head_len &&
                memcmp(other[f].head, first[f].head, first[f].head_len) == 0)
                fwrite(other[f].body, 1, other[f].body_len, out);
        }
    }
out:
    free(first);
    free(other);
    return rc;
}

/* ---- One dump per pid -------------------------------------------------- */

static int by_pid(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;

    if (x->pid != y->pid)
        return x->pid < y->pid ? -1 : 1;
    return strcmp(x->path, y->path);
}

static bool changed_later(const struct entry *a, const struct entry *b)
{
    return a->ctime.tv_sec != b->ctime.tv_sec ? a->ctime.tv_sec > b->ctime.tv_sec
                                              : a->ctime.tv_nsec > b->ctime.tv_nsec;
}

/* Several trusted dumps claiming one pid: the one the running process maps
 * is its own; else the one the kernel saw changed last (a pid reused after
 * a restart). Never a field the writer chose, such as its start time.
 * Keeps one entry per pid, in pid order; returns how many; *npids: pids
 * that had a conflict. */
static size_t settle_conflicts(struct entry *es, size_t n, size_t *npids)
{
    size_t out = 0, i = 0;

    *npids = 0;
    qsort(es, n, sizeof(*es), by_pid);
    while (i < n) {
        size_t j = i + 1, best = i;
        const char *why = NULL;

        while (j < n && es[j].pid == es[i].pid)
            j++;
        if (j - i > 1) {
            (*npids)++;
            why = "the last changed";
            for (size_t k = i + 1; k < j; k++)
                if (changed_later(&es[k], &es[best]))
                    best = k;
            for (size_t k = i; k < j; k++)
                if (pid_maps_file(es[k].pid, es[k].dev, es[k].ino)) {
                    best = k;
                    why = "the one the process maps";
                    break;
                }
        }
        for (size_t k = i; k < j; k++)
            if (k != best)
                free(es[k].own);
        es[out] = es[best];
        es[out].conflicts = j - i - 1;
        es[out].why = why;
        out++;
        i = j;
    }
    return out;
}

/* A path in a comment line: no line breaks or control bytes. */
static void comment_path(FILE *out, const char *path)
{
    for (const unsigned char *c = (const unsigned char *)path; *c; c++)
        fputc(*c < 0x20 || *c == 0x7f ? '?' : *c, out);
}

static void write_conflicts(FILE *out, const struct entry *es, size_t n, size_t npids)
{
    fputs("# HELP stalltrace_dump_conflicts Other trusted dumps claiming the pid of the exposed one.\n"
          "# TYPE stalltrace_dump_conflicts gauge\n", out);
    for (size_t i = 0; npids && i < n; i++) {
        if (!es[i].conflicts)
            continue;
        fprintf(out, "# pid %d is claimed by %zu dumps; exposing %s: ", es[i].pid, es[i].conflicts + 1,
                es[i].why);
        comment_path(out, es[i].path);
        fprintf(out, "\nstalltrace_dump_conflicts{pid=\"%d\"} %zu\n", es[i].pid, es[i].conflicts);
    }
}

/* ---- A scrape ------------------------------------------------------------ */

static int glob_error(const char *path, int err)
{
    (void)path;
    errno = err;
    return 1;                      /* stop: an unlistable directory fails the scrape */
}

static int add_path(char ***paths, size_t *n, size_t *cap, const char *path)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*paths)[i], path) == 0)
            return 0;
    if (GROW(*paths, *cap, *n + 1, 16) < 0 || !((*paths)[*n] = strdup(path)))
        return -1;
    (*n)++;
    return 0;
}

/* The paths every pattern matches now; -1 with *error when a directory
 * cannot be listed (EMFILE included: that is not "no dumps"). */
static int match_all(struct scraper *s, char ***paths, size_t *n, char **error)
{
    size_t cap = 0;

    *paths = NULL;
    *n = 0;
    for (int k = 0; k < s->npatterns; k++) {
        glob_t g;
        errno = 0;
        int rc = glob(s->patterns[k], GLOB_ERR, glob_error, &g);
        if (rc == GLOB_NOMATCH)
            continue;
        if (rc != 0) {
            int e = errno;
            if (rc != GLOB_NOSPACE)
                globfree(&g);
            *error = line("cannot list %s: %s", s->patterns[k],
                          rc == GLOB_NOSPACE ? "out of memory" : strerror(e ? e : EIO));
            return -1;
        }
        for (size_t i = 0; i < g.gl_pathc; i++)
            if (add_path(paths, n, &cap, g.gl_pathv[i]) < 0) {
                globfree(&g);
                *error = line("%s%s", "out of memory", "");
                return -1;
            }
        globfree(&g);
    }
    return 0;
}

int scraper_render(struct scraper *s, char **body, size_t *len, char **error)
{
    char **paths = NULL;
    struct entry *es = NULL;
    size_t npaths = 0, nes = 0, errors = 0, untrusted = 0, nconflicts = 0, i;
    FILE *out = NULL;
    int rc = -1;

    *body = NULL;
    *error = NULL;
    *len = 0;
    if (match_all(s, &paths, &npaths, error) < 0)
        goto out;
    es = calloc(npaths + 1, sizeof(*es));
    if (!es)
        goto oom;
    for (i = 0; i < s->nsources; i++)
        s->sources[i].seen = false;
    for (i = 0; i < npaths; i++) {
        struct source *src = source_for(s, paths[i]);
        struct entry e;

        if (!src)
            goto oom;
        if (__atomic_load_n(&s->cancelled, __ATOMIC_ACQUIRE)) {
            *error = line("%s%s", "stopping", "");
            goto out;
        }
        src->seen = true;
        int got = scrape_source(src, &e, error);
        if (got < 0)
            goto out;
        if (got == 0) {
            errors++;
            continue;
        }
        if (!trust_dump(e.owner, e.pid)) {
            char uid[16];
            snprintf(uid, sizeof(uid), "%u", e.owner);
            note_error(src, line("%s: not trusted: owned by uid %s, neither this server's user nor the owner "
                                 "of the pid it claims", src->path, uid));
            untrusted++;
            free(e.own);
            continue;
        }
        es[nes++] = e;
    }
    nes = settle_conflicts(es, nes, &nconflicts);
    /* Forget files no pattern matches any more (deleted dumps). */
    for (i = 0; i < s->nsources;) {
        if (s->sources[i].seen) {
            i++;
            continue;
        }
        source_forget(&s->sources[i]);
        s->sources[i] = s->sources[--s->nsources];
    }
    out = open_memstream(body, len);
    if (!out)
        goto oom;
    fprintf(out, "# HELP stalltrace_scrape_dumps Dumps whose figures this scrape exposes.\n"
                 "# TYPE stalltrace_scrape_dumps gauge\n"
                 "stalltrace_scrape_dumps %zu\n"
                 "# HELP stalltrace_scrape_dump_errors Files the dump patterns matched that could not be read as dumps.\n"
                 "# TYPE stalltrace_scrape_dump_errors gauge\n"
                 "stalltrace_scrape_dump_errors %zu\n"
                 "# HELP stalltrace_scrape_dumps_untrusted Dumps left out: owned by neither this server's user nor the owner of the pid they claim.\n"
                 "# TYPE stalltrace_scrape_dumps_untrusted gauge\n"
                 "stalltrace_scrape_dumps_untrusted %zu\n",
            nes, errors, untrusted);
    write_conflicts(out, es, nes, nconflicts);
    if (nes == 0) {
        /* The families still, empty: a dashboard sees them exist. */
        struct m_process *none = NULL;
        report_openmetrics(out, &none, 0, NULL);
    } else {
        merge(out, es, nes);
        fputs("# EOF\n", out);
    }
    if (ferror(out) | (fclose(out) != 0)) {
        out = NULL;
        goto oom;
    }
    out = NULL;
    rc = 0;
    goto out;
oom:
    if (!*error)
        *error = line("%s%s", "out of memory", "");
out:
    if (out)
        fclose(out);
    if (rc < 0) {
        free(*body);
        *body = NULL;
    }
    for (i = 0; i < nes; i++)
        free(es[i].own);
    free(es);
    for (i = 0; i < npaths; i++)
        free(paths[i]);
    free(paths);
    return rc;
}

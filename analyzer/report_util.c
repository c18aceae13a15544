/* report_util.c - helpers shared by the export formats (folded, chrome,
 * openmetrics, html) and the gates (check, diff). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report_util.h"

int load_dumps(char **paths, size_t n, const struct model_options *opt, struct loaded_dumps *out)
{
    static const struct model_options all = {.threshold_ms = -1};
    size_t i;

    memset(out, 0, sizeof(*out));
    out->dumps = calloc(n + 1, sizeof(*out->dumps));
    out->procs = calloc(n + 1, sizeof(*out->procs));
    if (!out->dumps || !out->procs) {
        fprintf(stderr, "stalltrace: out of memory\n");
        free_loaded_dumps(out);
        return 2;
    }
    for (i = 0; i < n; i++) {
        char *err = NULL;
        out->dumps[i] = dump_open_path(paths[i], &err);
        out->n = i + 1;
        if (!out->dumps[i]) {
            fprintf(stderr, "stalltrace: %s\n", err ? err : "out of memory");
            free(err);
            free_loaded_dumps(out);
            return 2;
        }
        out->procs[i] = model_build(out->dumps[i], opt ? opt : &all);
        if (!out->procs[i]) {
            fprintf(stderr, "stalltrace: %s: out of memory\n", paths[i]);
            free_loaded_dumps(out);
            return 2;
        }
    }
    return 0;
}

void free_loaded_dumps(struct loaded_dumps *l)
{
    size_t i;

    for (i = 0; i < l->n; i++) {
        if (l->procs)
            model_free(l->procs[i]);
        if (l->dumps)
            dump_free(l->dumps[i]);
    }
    free(l->procs);
    free(l->dumps);
    memset(l, 0, sizeof(*l));
}

void sanitize_ascii(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            *s = '?';
}

void frame_label(const struct sym_frame *f, char *buf, size_t len)
{
    char *c;

    if (f->function)
        snprintf(buf, len, "%s", f->function);
    else if (f->module)
        snprintf(buf, len, "[%s]", f->module);
    else
        snprintf(buf, len, "[unknown]");
    sanitize_ascii(buf);
    for (c = buf; *c; c++)
        if (*c == ';')
            *c = ':';
}

void stack_top_describe(const struct m_stack *s, char *buf, size_t len)
{
    if (s->n == 0) {
        snprintf(buf, len, "(no stack)");
        return;
    }
    size_t c = frames_culprit(s);
    frames_describe(s->frames[c < s->n ? c : 0], buf, len);
    sanitize_ascii(buf);
}

const struct m_thread *thread_by_tid(const struct m_process *p, uint32_t tid)
{
    size_t i;

    for (i = 0; i < p->nthreads; i++)
        if (p->threads[i].tid == tid)
            return &p->threads[i];
    return NULL;
}

const struct st_thread *dump_thread_by_tid(const struct m_process *p, uint32_t tid)
{
    uint32_t i;

    for (i = 0; p->dump && i < p->dump->nthreads; i++)
        if (p->dump->threads[i].tid == tid)
            return &p->dump->threads[i];
    return NULL;
}

const struct m_stack *stall_stack(const struct m_stall *st, size_t *nsamples)
{
    *nsamples = 0;
    if (!st->call && st->nsamples > 0) {
        *nsamples = st->nsamples;
        return NULL;
    }
    return &st->stack;
}

bool parse_number(const char *s, double max, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0) || !isfinite(v) || v > max)
        return false;
    *out = v;
    return true;
}

static int by_duration_desc(const void *a, const void *b)
{
    const struct m_slow_call *x = *(const struct m_slow_call *const *)a;
    const struct m_slow_call *y = *(const struct m_slow_call *const *)b;
    return x->duration_ms < y->duration_ms ? 1 : x->duration_ms > y->duration_ms ? -1 : 0;
}

static int by_start(const void *a, const void *b)
{
    const struct m_slow_call *x = *(const struct m_slow_call *const *)a;
    const struct m_slow_call *y = *(const struct m_slow_call *const *)b;
    return x->start_s < y->start_s ? -1 : x->start_s > y->start_s;
}

size_t longest_slow_calls(const struct m_process *p, size_t max, const struct m_slow_call ***out)
{
    size_t i, n = p->nslow_calls;
    const struct m_slow_call **v = malloc((n ? n : 1) * sizeof(*v));

    *out = v;
    if (!v)
        return (size_t)-1;
    for (i = 0; i < n; i++)
        v[i] = &p->slow_calls[i];
    if (n > max) {
        qsort(v, n, sizeof(*v), by_duration_desc);
        n = max;
    }
    qsort(v, n, sizeof(*v), by_start);
    return n;
}

const char *stall_stack_note(const struct m_process *p, const char *call, const struct m_stack *s)
{
    if (s->n > 0)
        return NULL;
    if (call)
        return "the recorder could not unwind this call";
    if (p->dump->hdr.flags & ST_FLAG_SAMPLING)
        return "no sample landed in it: its time went to calls stalltrace does not wrap, or to "
               "moments it could not sample";
    return "in-stall sampling was off (STALLTRACE_SIGNAL=0, or the program owns the signal)";
}

static bool is_interpreter(const char *base)
{
    static const char *const names[] = {"python", "node", "pypy", "ruby", "java", NULL};
    for (int i = 0; base && names[i]; i++)
        if (strncmp(base, names[i], strlen(names[i])) == 0)
            return true;
    return false;
}

void program_name(const struct m_process *p, char *buf, size_t len)
{
    const char *run = p->argc > 0 && p->argv[0][0] ? p->argv[0] : p->exe;
    const char *base = frames_basename(run ? run : "?");

    snprintf(buf, len, "%s", base);
    if (!is_interpreter(base) && !is_interpreter(frames_basename(p->exe)))
        return;
    /* Interpreter options come first; "-m mod" names the program. */
    for (int i = 1; i < p->argc; i++) {
        const char *a = p->argv[i];
        if (strcmp(a, "-m") == 0 && i + 1 < p->argc) {
            snprintf(buf, len, "%s", p->argv[i + 1]);
            break;
        }
        if (strcmp(a, "-c") == 0 || strcmp(a, "-e") == 0)
            break;
        if (strcmp(a, "-X") == 0 || strcmp(a, "-W") == 0) {
            i++;                   /* an option with its value apart */
            continue;
        }
        if (a[0] == '-')
            continue;
        snprintf(buf, len, "%s", frames_basename(a));
        break;
    }
    sanitize_ascii(buf);
}

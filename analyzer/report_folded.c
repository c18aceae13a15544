/* report_folded.c - `report --format folded`: Brendan Gregg's folded stacks
 * (outermost frame first, ';'-separated) weighted by stalled milliseconds. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "report.h"
#include "report_util.h"

struct folded_line {
    char *stack;
    double ms;
};

struct folded {
    struct folded_line *lines;
    size_t n, cap;
};

/* "root;outermost;...;innermost" from a stack stored innermost first, in
 * the flame view unless all. */
static char *fold_stack(const char *root, const struct m_stack *s, const char *empty, bool all)
{
    char label[512];
    size_t len = strlen(root) + 1, used, i, n;
    const struct sym_frame **view = malloc((s->n ? s->n : 1) * sizeof(*view));
    char *out;

    if (!view)
        return NULL;
    n = frames_flame_view(s, all, view);
    for (i = 0; i < n; i++) {
        frame_label(view[i], label, sizeof(label));
        len += strlen(label) + 1;
    }
    len += strlen(empty) + 1;
    out = malloc(len);
    if (!out) {
        free(view);
        return NULL;
    }
    used = (size_t)snprintf(out, len, "%s", root);
    for (i = n; i-- > 0;) {
        frame_label(view[i], label, sizeof(label));
        used += (size_t)snprintf(out + used, len - used, ";%s", label);
    }
    if (n == 0)
        snprintf(out + used, len - used, ";%s", empty);
    free(view);
    return out;
}

static int add_line(struct folded *f, char *stack, double ms)
{
    if (!stack)
        return -1;
    if (GROW(f->lines, f->cap, f->n + 1, 64) < 0) {
        free(stack);
        return -1;
    }
    f->lines[f->n].stack = stack;
    f->lines[f->n].ms = ms;
    f->n++;
    return 0;
}

static int cmp_line(const void *a, const void *b)
{
    return strcmp(((const struct folded_line *)a)->stack, ((const struct folded_line *)b)->stack);
}

/* Every stall's time goes to the stack it blocked in; a CPU-bound stall's
 * time is split evenly over the stacks sampled while it ran. */
static int fold_process(struct folded *f, const struct m_process *p, bool all)
{
    char root[128];
    size_t i, j, nsamples;

    snprintf(root, sizeof(root), "%s", frames_basename(p->exe)[0] ? frames_basename(p->exe) : "process");
    sanitize_ascii(root);
    for (char *c = root; *c; c++)
        if (*c == ';')
            *c = ':';
    for (i = 0; i < p->nstalls; i++) {
        const struct m_stall *st = &p->stalls[i];
        const struct m_stack *s = stall_stack(st, &nsamples);
        const char *empty = st->call ? st->call : "[CPU-bound, no stack sampled]";

        if (s) {
            if (add_line(f, fold_stack(root, s, empty, all), st->duration_ms) < 0)
                return -1;
            continue;
        }
        for (j = 0; j < nsamples; j++)
            if (add_line(f, fold_stack(root, &st->samples[j].stack, empty, all),
                         st->duration_ms / (double)nsamples) < 0)
                return -1;
    }
    return 0;
}

char *report_folded_text(struct m_process **procs, size_t n, bool all, size_t *len)
{
    struct folded f = {0};
    size_t i, j;
    char *text = NULL;
    FILE *out = open_memstream(&text, len);
    int rc = out ? 0 : -1;

    for (i = 0; i < n && rc == 0; i++)
        rc = fold_process(&f, procs[i], all);
    if (rc == 0 && f.n > 1)
        qsort(f.lines, f.n, sizeof(*f.lines), cmp_line);
    /* One line per distinct stack; weights are rounded once, after summing,
     * and a stack that stalled at all keeps at least 1 ms. */
    for (i = 0; rc == 0 && i < f.n; i = j) {
        double ms = 0;
        for (j = i; j < f.n && strcmp(f.lines[j].stack, f.lines[i].stack) == 0; j++)
            ms += f.lines[j].ms;
        long long w = llround(ms);
        fprintf(out, "%s %lld\n", f.lines[i].stack, w > 0 ? w : 1);
    }
    for (i = 0; i < f.n; i++)
        free(f.lines[i].stack);
    free(f.lines);
    if (out && (fclose(out) != 0 || rc != 0)) {
        free(text);
        return NULL;
    }
    return text;
}

int report_folded(FILE *out, struct m_process **procs, size_t n, const struct report_options *opt)
{
    size_t len = 0;
    char *text = report_folded_text(procs, n, opt && opt->all_frames, &len);

    if (!text)
        return -1;
    fwrite(text, 1, len, out);
    free(text);
    return ferror(out) ? -1 : 0;
}

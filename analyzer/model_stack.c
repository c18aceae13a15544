/* model_stack.c - a recorded stack as the model names it (recorder and hook
 * frames dropped, Python frames spliced in), and when two are the same place. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "model_helpers.h"
#include "pyframes.h"

/* stalltrace's own Python hook wraps the user's executor tasks: its frames
 * are ours, like the recorder's, and no report shows them. */
static void drop_hook_frames(struct m_stack *s)
{
    size_t n = 0;

    for (size_t i = 0; i < s->n; i++) {
        const struct sym_frame *f = s->frames[i];
        if (strcmp(f->kind, "python") == 0 && f->file && strstr(f->file, "stalltrace_hook/"))
            continue;
        s->frames[n++] = f;
    }
    s->n = n;
}

/* Name a recorded stack; frames of the recorder are dropped, and inlined
 * functions become frames of their own (at the same address). */
int model_make_stack(struct m_process *p, const struct dump_stack *ds, uint64_t at_ns,
                     struct m_stack *out)
{
    const struct sym_frame *f;
    size_t i, n = 0, cap = ds->nframes;

    memset(out, 0, sizeof(*out));
    out->truncated = ds->truncated != 0;
    if (ds->nframes == 0) {
        if (py_splice(p->py, ds, &out->frames, &out->n) < 0)
            return -1;
        drop_hook_frames(out);
        return 0;
    }
    out->frames = calloc(cap, sizeof(*out->frames));
    if (!out->frames)
        return -1;
    for (i = 0; i < ds->nframes; i++) {
        f = sym_lookup_at(p->sym, ds->frames[i], i == 0, at_ns, ds->jit_map_bytes);
        if (!f)
            return -1;
        for (; f; f = f->caller) {
            if (f->hidden)
                continue;
            if (GROW(out->frames, cap, n + 1, cap) < 0)
                return -1;
            out->frames[n++] = f;
            out->n = n;
        }
    }
    if (py_splice(p->py, ds, &out->frames, &out->n) < 0)
        return -1;
    drop_hook_frames(out);
    return 0;
}

int model_cmp_str(const char *a, const char *b)
{
    if (!a || !b)
        return a == b ? 0 : (a ? 1 : -1);
    return strcmp(a, b);
}

/* Two named frames are the same place when function and line agree. */
static bool same_frame(const struct sym_frame *a, const struct sym_frame *b)
{
    if (a == b)
        return true;
    if (!a->function || !b->function)
        return a->address == b->address;
    return model_cmp_str(a->function, b->function) == 0 && model_cmp_str(a->file, b->file) == 0 &&
           a->line == b->line && model_cmp_str(a->module, b->module) == 0;
}

bool model_same_place(const struct m_stack *a, const struct m_stack *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (!same_frame(a->frames[i], b->frames[i]))
            return false;
    return true;
}

/* A total order on (call, named stack) that agrees with same_site: equal
 * places compare 0, so sorting brings each place's members together. */
static int cmp_frame(const struct sym_frame *a, const struct sym_frame *b)
{
    int c;

    if (a == b)
        return 0;
    if (!a->function || !b->function) {
        if (a->function || b->function)
            return a->function ? 1 : -1;
        return a->address < b->address ? -1 : a->address > b->address;
    }
    if ((c = model_cmp_str(a->function, b->function)) || (c = model_cmp_str(a->file, b->file)) ||
        (c = model_cmp_str(a->module, b->module)))
        return c;
    return a->line < b->line ? -1 : a->line > b->line;
}

int model_cmp_place(const char *call_a, const struct m_stack *a, const char *call_b,
                    const struct m_stack *b)
{
    size_t i;
    int c = model_cmp_str(call_a, call_b);

    if (c)
        return c;
    if (a->n != b->n)
        return a->n < b->n ? -1 : 1;
    for (i = 0; i < a->n; i++)
        if ((c = cmp_frame(a->frames[i], b->frames[i])))
            return c;
    return 0;
}

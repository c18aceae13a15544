/* pyframes.c - names the CPython and CRuby frames of recorded stacks (name,
 * file, line from the code's line table) and splices them into native stacks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "pyframes.h"

/* Many stacks share frames: one named frame per (description, line). */
struct py_slot {
    const struct py_code *info;
    uint64_t code;
    int line;
    const struct py_code *at;      /* a C method's caller, whose file it is at */
    struct sym_frame *frame;       /* NULL: empty slot */
};

struct py_namer {
    bool native_only;
    size_t unsupported;
    struct py_slot *slots;
    size_t cap, used;
};

struct py_namer *py_namer_new(bool native_only)
{
    struct py_namer *nm = calloc(1, sizeof(*nm));

    if (!nm)
        return NULL;
    nm->native_only = native_only;
    nm->cap = 256;
    nm->slots = calloc(nm->cap, sizeof(*nm->slots));
    if (!nm->slots) {
        free(nm);
        return NULL;
    }
    return nm;
}

void py_namer_free(struct py_namer *nm)
{
    size_t i;

    if (!nm)
        return;
    for (i = 0; i < nm->cap; i++)
        free(nm->slots[i].frame);
    free(nm->slots);
    free(nm);
}

size_t py_namer_unsupported(const struct py_namer *nm)
{
    return nm->unsupported;
}

static size_t slot_hash(const struct py_code *info, uint64_t code, int line, const struct py_code *at,
                        size_t cap)
{
    uint64_t h = (code ^ (uint64_t)(uintptr_t)info ^ ((uint64_t)(uintptr_t)at << 1)) * 0x9e3779b97f4a7c15ull;
    h = (h ^ (uint64_t)(unsigned)line) * 0x100000001b3ull;
    return (size_t)(h >> 17) & (cap - 1);
}

static struct py_slot *slot_find(struct py_slot *slots, size_t cap, const struct py_code *info,
                                 uint64_t code, int line, const struct py_code *at)
{
    size_t j = slot_hash(info, code, line, at, cap);

    while (slots[j].frame && !(slots[j].info == info && slots[j].code == code && slots[j].line == line &&
                               slots[j].at == at))
        j = (j + 1) & (cap - 1);
    return &slots[j];
}

static int grow(struct py_namer *nm)
{
    size_t cap = nm->cap * 2, i;
    struct py_slot *slots = calloc(cap, sizeof(*slots));

    if (!slots)
        return -1;
    for (i = 0; i < nm->cap; i++) {
        struct py_slot *o = &nm->slots[i];
        if (o->frame)
            *slot_find(slots, cap, o->info, o->code, o->line, o->at) = *o;
    }
    free(nm->slots);
    nm->slots = slots;
    nm->cap = cap;
    return 0;
}

/* caller: for a C method's frame (ST_PYFRAME_CFUNC), the Ruby frame that
 * called it, whose file and line it is at, as in Ruby's backtraces. */
static const struct sym_frame *name_frame(struct py_namer *nm, const struct dump_pyframe *pf,
                                          const struct dump_pyframe *caller)
{
    const struct py_code *info = pf->info, *at = caller ? caller->info : NULL;
    int line = at ? py_code_line(at, caller->instr) : info ? py_code_line(info, pf->instr) : 0;
    struct py_slot *slot;
    struct sym_frame *f;

    if ((nm->used + 1) * 2 > nm->cap && grow(nm) < 0)
        return NULL;
    slot = slot_find(nm->slots, nm->cap, info, pf->code, line, at);
    if (slot->frame)
        return slot->frame;
    f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->address = pf->code;
    if (pf->flags & ST_PYFRAME_RUBY) {
        f->kind = "ruby";
        f->module = "[ruby]";
    } else {
        f->kind = "python";
        f->module = "[python]";    /* as the perf-map Python frames */
    }
    f->line = line > 0 ? line : 0;
    f->core_method = (pf->flags & ST_PYFRAME_CFUNC) != 0;
    if (info) {
        f->function = info->qualname[0] ? info->qualname : NULL;
        f->file = at && at->filename[0] ? at->filename : info->filename[0] ? info->filename : NULL;
        if (!f->function)
            f->note = pf->flags & ST_PYFRAME_RUBY ? "iseq without a label" : "code object without a name";
        /* stalltrace's own start-up hook wraps the pools' tasks: its
         * frames are the recorder's, never the place that blocked. */
        if (f->file && strstr(f->file, "stalltrace_hook/sitecustomize.py"))
            f->hidden = true;
    } else {
        f->note = pf->flags & ST_PYFRAME_RUBY ? "iseq not described in the dump (its record was overwritten)"
                                              : "code object not described in the dump (its record was overwritten)";
    }
    *slot = (struct py_slot){info, pf->code, line, at, f};
    nm->used++;
    return f;
}

const struct sym_frame *py_namer_frame(struct py_namer *nm, const struct dump_pyframe *pf)
{
    return name_frame(nm, pf, NULL);
}

/* The Ruby frame that called the C method at pyframes[i]: the next one out
 * that is no C method itself (NULL: none, or not a C method's frame). */
static const struct dump_pyframe *cfunc_caller(const struct dump_stack *ds, size_t i)
{
    if (!(ds->pyframes[i].flags & ST_PYFRAME_CFUNC))
        return NULL;
    for (size_t j = i + 1; j < ds->npython; j++)
        if (!(ds->pyframes[j].flags & ST_PYFRAME_CFUNC))
            return &ds->pyframes[j];
    return NULL;
}


/* The frame of the interpreter's evaluation loop: CPython's, or CRuby's VM
 * entry (GCC may split off a ".cold" part). */
static bool is_eval_frame(const struct sym_frame *f, bool ruby)
{
    const char *eval = ruby ? "rb_vm_exec" : "_PyEval_EvalFrameDefault";
    size_t len = strlen(eval);

    return f->function && strcmp(f->kind, "native") == 0 && strncmp(f->function, eval, len) == 0 &&
           (f->function[len] == '\0' || f->function[len] == '.');
}

/* Append the Python frames [*next, end) to out; end is the end of the run
 * that starts at *next (after its first entry frame), or all when whole. */
static int place_run(struct py_namer *nm, const struct dump_stack *ds, size_t *next, bool whole,
                     const struct sym_frame **out, size_t *k)
{
    while (*next < ds->npython) {
        const struct dump_pyframe *pf = &ds->pyframes[*next];
        const struct sym_frame *f = name_frame(nm, pf, cfunc_caller(ds, (*next)++));
        if (!f)
            return -1;
        if (!f->hidden)
            out[(*k)++] = f;
        if (!whole && (pf->flags & ST_PYFRAME_ENTRY))
            break;
    }
    return 0;
}

int py_splice(struct py_namer *nm, const struct dump_stack *ds, const struct sym_frame ***frames,
              size_t *n)
{
    const struct sym_frame **in = *frames, **out;
    size_t i, k = 0, next = 0, evals = 0, seen = 0;

    if (ds->python == ST_PY_UNSUPPORTED)
        nm->unsupported++;
    if (nm->native_only || ds->npython == 0 || !ds->pyframes)
        return 0;
    out = malloc((*n + ds->npython) * sizeof(*out));
    if (!out)
        return -1;
    bool ruby = (ds->pyframes[0].flags & ST_PYFRAME_RUBY) != 0;
    for (i = 0; i < *n; i++)
        evals += is_eval_frame(in[i], ruby);
    for (i = 0; i < *n; i++) {
        const struct sym_frame *f = in[i];
        /* A perf-map Python frame repeats what the walk says exactly. */
        if (strcmp(f->kind, "python") == 0)
            continue;
        if (is_eval_frame(f, ruby) && next < ds->npython) {
            /* The outermost evaluation frame we have takes any runs left:
             * deeper native frames were cut, or the counts disagree. */
            if (place_run(nm, ds, &next, ++seen == evals, out, &k) < 0)
                goto fail;
            continue;
        }
        out[k++] = f;
    }
    /* No evaluation frame to replace (no symbols): keep them, outermost. */
    if (place_run(nm, ds, &next, true, out, &k) < 0)
        goto fail;
    free(in);
    *frames = out;
    *n = k;
    return 0;
fail:
    free(out);
    return -1;
}


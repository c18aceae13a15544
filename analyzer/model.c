/* model.c - turns a loaded dump into the report model by running the steps
 * in order (model_build.h); it only sets up, sequences and frees them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "model_build.h"
#include "model_helpers.h"
#include "pyframes.h"

/* redis-server is a link to redis-check-rdb: its frames are named after the
 * name it was run as. Interpreters keep their own (python3 -> python3.11).
 * A process title set over argv (redis's "redis-server unixsocket:/run/r.sock",
 * read at attach) is cut at its first space: the name is the first word. */
static int name_program_as_run(struct m_process *p)
{
    char first[256];
    const char *exe = frames_basename(p->exe), *run = NULL;

    if (p->argc > 0 && p->argv[0]) {
        snprintf(first, sizeof(first), "%.*s", (int)strcspn(p->argv[0], " "), p->argv[0]);
        run = frames_basename(first);
    }
    if (!exe || !run || !run[0] || strcmp(exe, run) == 0 || strncmp(run, exe, strlen(run)) == 0 ||
        strncmp(exe, run, strlen(exe)) == 0)
        return 0;
    return sym_rename_module(p->sym, p->exe, run);
}

struct m_process *model_build(const struct dump *d, const struct model_options *opt)
{
    struct m_process *p = calloc(1, sizeof(*p));

    if (!p)
        return NULL;
    p->dump = d;
    p->pid = d->proc.pid;
    p->parent_pid = d->proc.parent_pid;
    p->exe = d->proc.exe;
    p->argc = d->argc;
    p->argv = d->argv;
    p->duration_s = (double)d->hdr.last_update_ns / 1e9;
    p->threshold_ms = (double)d->hdr.threshold_ns / 1e6;
    p->complete = (d->hdr.flags & ST_FLAG_COMPLETE) != 0;
    p->attached = (d->hdr.flags & ST_FLAG_ATTACHED) != 0;
    p->dropped = d->dropped;
    p->end_reason = d->hdr.end_reason;
    p->end_signal = d->hdr.end_signal;
    p->sym = sym_new(d->modules, d->nmodules, d->proc.pid, opt ? opt->perf_map_dir : NULL);
    for (size_t i = 0; p->sym && i < d->njitsyms; i++)
        sym_add_jit(p->sym, d->jitsyms[i].start, d->jitsyms[i].size, d->jitsyms[i].name,
                    d->jitsyms[i].map_end);
    for (size_t i = 0; p->sym && i < d->ncode_copies; i++)
        sym_add_code_copy(p->sym, d->code_copies[i].start, d->code_copies[i].size, d->code_copies[i].copy_of);
    if (p->sym && name_program_as_run(p) < 0)
        goto fail;
    p->py = py_namer_new(opt && opt->native_only);
    if (!p->sym || !p->py)
        goto fail;

    /* The steps, in order: each reads the dump and what the steps before it
     * built. */
    if (model_build_threads(p, d) < 0 || model_build_stalls(p, d, opt ? opt->threshold_ms : -1) < 0 ||
        model_build_slow_calls(p, d) < 0 || model_build_sites(p) < 0 || model_build_lock_waits(p, d) < 0 ||
        model_build_pools(p, d) < 0 || model_build_queues(p, d) < 0 || model_judge_pools(p, d) < 0 ||
        model_build_locks(p, d) < 0 || model_build_holders(p, d) < 0 ||
        model_build_feeders(p, d) < 0 ||
        model_build_diagnosis(p) < 0)
        goto fail;
    if (py_namer_unsupported(p->py))
        p->python_note = "Python frames unavailable: unsupported CPython version";
    return p;
fail:
    model_free(p);
    return NULL;
}

void model_free(struct m_process *p)
{
    size_t i;

    if (!p)
        return;
    model_free_stalls(p);
    model_free_slow_calls(p);
    model_free_sites(p);
    model_free_queues(p);
    model_free_feeders(p);
    model_free_pools(p);
    model_free_locks(p);
    model_free_holders(p);
    for (i = 0; i < p->ndiagnosis; i++)
        free(p->diagnosis[i].summary);
    free(p->diagnosis);
    free(p->threads);
    sym_free(p->sym);
    py_namer_free(p->py);
    free(p);
}

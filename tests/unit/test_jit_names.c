/* test_jit_names.c - a dump whose JIT code address was reused: each sample
 * is named by the perf map entries written before it was taken (issue 21). */
#include <criterion/criterion.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "dump.h"
#include "dump_builder.h"
#include "model.h"

#define PID 777
#define HOT 0x7f0000001010ull      /* an address in the JIT code, reused */

/* A perf map entry as the recorder copies it: offset past its line after the name. */
static void jitsym(struct dump_builder *b, uint64_t start, uint32_t size, const char *name, uint64_t map_end)
{
    uint8_t buf[256] = {0};
    struct st_rec_jitsym r = {.start = start, .size = size, .name_len = (uint16_t)strlen(name),
                              .flags = ST_JITSYM_MAP_END};
    const size_t skip = sizeof(struct st_record);
    memcpy(buf, &r, sizeof r);
    memcpy(buf + sizeof r, name, r.name_len);
    size_t at = (sizeof r + r.name_len + 7) & ~(size_t)7;
    memcpy(buf + at, &map_end, sizeof map_end);
    db_append(b, ST_REC_JITSYM, buf + skip, at + sizeof map_end - skip);
}

/* A sample of iteration seq taken when the perf map was map_bytes long. */
static void sample(struct dump_builder *b, uint64_t seq, uint64_t at_ns, const uint64_t *frames,
                   uint16_t n, uint64_t map_bytes)
{
    uint8_t buf[512] = {0};
    struct st_rec_sample r = {.tid = PID, .iter_seq = seq, .at_ns = at_ns};
    r.stack = (struct st_stack){.nframes = n, .unwinder = ST_UNWIND_LIBUNWIND_SIGNAL,
                                .flags = ST_STACK_JIT_MARK};
    const size_t skip = sizeof(struct st_record);
    memcpy(buf, &r, sizeof r);
    memcpy(buf + sizeof r, frames, n * sizeof *frames);
    memcpy(buf + sizeof r + n * sizeof *frames, &map_bytes, sizeof map_bytes);
    db_append(b, ST_REC_SAMPLE, buf + skip, sizeof r + n * sizeof *frames + sizeof map_bytes - skip);
}

static struct m_process *modelled(struct dump_builder *b, struct dump **d)
{
    char *err = NULL;
    *d = dump_open_mem(b->buf, b->len, "jit.dump", &err);
    cr_assert_not_null(*d, "%s", err);
    struct model_options opt = {.threshold_ms = -1, .perf_map_dir = "/nonexistent"};
    struct m_process *p = model_build(*d, &opt);
    cr_assert_not_null(p);
    return p;
}

static const char *name_at(const struct m_stack *s, size_t i)
{
    return i < s->n ? s->frames[i]->function : "(no frame)";
}

Test(jit_names, samples_before_and_after_the_address_was_reused)
{
    struct dump_builder *b = db_new(2, 2, 1 << 16);
    const char *argv[] = {"node", "app.js"};
    db_set_process(b, PID, "/usr/bin/node", 2, argv);
    db_add_thread(b, PID, "node", ST_THREAD_LOOP | ST_THREAD_MAIN);
    const uint64_t stack[] = {HOT, 0x7f0000009005ull};
    /* Iteration 1 ran hasHooks at HOT; by iteration 2 the code there is
     * rebuildRoutes, written to the map at offset 300..400 (after both
     * samples of iteration 1 and before those of iteration 2). */
    db_stall(b, PID, ST_CALL_NONE, 1, 1000000000, 100000000, NULL, 0);
    sample(b, 1, 1020000000, stack, 2, 300);
    sample(b, 1, 1040000000, stack, 2, 300);
    db_stall(b, PID, ST_CALL_NONE, 2, 2000000000, 100000000, NULL, 0);
    sample(b, 2, 2020000000, stack, 2, 400);
    sample(b, 2, 2040000000, stack, 2, 450);
    sample(b, 2, 2060000000, stack, 2, 0);       /* taken when there was no map: unnamed */
    jitsym(b, 0x7f0000009000ull, 0x100, "JS:~onRebuildTimer /srv/app.js:60:3", 100);
    jitsym(b, 0x7f0000001000ull, 0x80, "JS:*hasHooks node:internal/async_hooks:471:18", 200);
    jitsym(b, 0x7f0000001000ull, 0x60, "JS:*rebuildRoutes /srv/app.js:23:5", 400);
    jitsym(b, 0x7f0000001000ull, 0x60, "JS:*FastBuffer node:internal/buffer:958:14", 900);
    db_complete(b, 3000000000ull);

    struct dump *d;
    struct m_process *p = modelled(b, &d);
    cr_assert_eq(d->njitsyms, 4);
    cr_assert_eq(d->jitsyms[2].map_end, 400);
    cr_assert_eq(p->nstalls, 2);

    const struct m_stall *one = &p->stalls[0], *two = &p->stalls[1];
    cr_assert_eq(one->nsamples, 2);
    for (size_t i = 0; i < one->nsamples; i++) {
        cr_assert_str_eq(name_at(&one->samples[i].stack, 0), "hasHooks");
        cr_assert_str_eq(name_at(&one->samples[i].stack, 1), "onRebuildTimer");
    }
    cr_assert_str_eq(name_at(&one->stack, 0), "hasHooks");
    cr_assert_eq(two->nsamples, 3);
    cr_assert_str_eq(name_at(&two->samples[0].stack, 0), "rebuildRoutes");
    cr_assert_str_eq(name_at(&two->samples[1].stack, 0), "rebuildRoutes");
    cr_assert_null(name_at(&two->samples[2].stack, 0), "named %s", name_at(&two->samples[2].stack, 0));
    cr_assert_null(name_at(&two->samples[2].stack, 1));
    /* The stall's stack is a sample named as it was taken. */
    cr_assert_str_eq(name_at(&two->stack, 0), "rebuildRoutes");
    cr_assert_str_eq(name_at(&two->stack, 1), "onRebuildTimer");
    model_free(p);
    dump_free(d);
    db_free(b);
}

/* A stack of a recorder that noted no length (format version 1 before the
 * mark) is named by the last entry written. */
Test(jit_names, an_unmarked_stack_takes_the_last_entry)
{
    struct dump_builder *b = db_new(2, 2, 1 << 16);
    const char *argv[] = {"node", "app.js"};
    db_set_process(b, PID, "/usr/bin/node", 2, argv);
    db_add_thread(b, PID, "node", ST_THREAD_LOOP | ST_THREAD_MAIN);
    const uint64_t stack[] = {HOT};
    db_stall(b, PID, ST_CALL_NONE, 1, 1000000000, 100000000, NULL, 0);
    db_sample(b, PID, 1, 1020000000, stack, 1);
    jitsym(b, 0x7f0000001000ull, 0x80, "JS:*hasHooks node:internal/async_hooks:471:18", 200);
    jitsym(b, 0x7f0000001000ull, 0x60, "JS:*rebuildRoutes /srv/app.js:23:5", 400);
    db_complete(b, 2000000000ull);
    struct dump *d;
    struct m_process *p = modelled(b, &d);
    cr_assert_str_eq(name_at(&p->stalls[0].samples[0].stack, 0), "rebuildRoutes");
    model_free(p);
    dump_free(d);
    db_free(b);
}

/* model_holders.c - who held the lock a long wait was for: the holder the
 * recorder named, joined with the stack the holder sampled of itself. */
#include <stdio.h>
#include <stdlib.h>

#include "model_build.h"

/* The holder's own sample of the same wait (waiter, object, start), if any. */
static const struct dump_event *sample_of(const struct dump *d, const struct dump_event *h)
{
    for (size_t i = 0; i < d->nevents; i++) {
        const struct dump_event *e = &d->events[i];
        if (e->type == ST_REC_HOLDER_SAMPLE && e->tid == h->tid && e->object == h->object &&
            e->start_ns == h->start_ns && e->holder_tid == h->holder_tid)
            return e;
    }
    return NULL;
}

int model_build_holders(struct m_process *p, const struct dump *d)
{
    size_t n = 0;

    for (size_t i = 0; i < d->nevents; i++)
        n += d->events[i].type == ST_REC_LOCK_HOLDER;
    p->holders = calloc(n ? n : 1, sizeof(*p->holders));
    if (!p->holders)
        return -1;
    for (size_t i = 0; i < d->nevents; i++) {
        const struct dump_event *e = &d->events[i];
        if (e->type != ST_REC_LOCK_HOLDER)
            continue;
        struct m_holder *h = &p->holders[p->nholders++];
        h->waiter_tid = e->tid;
        h->tid = e->holder_tid;
        h->readers = e->readers;
        h->thread = model_thread_name(p, e->holder_tid);
        h->object = e->object;
        h->kind = e->kind;
        h->call = model_call_name(e->call);
        h->wait_start_s = (double)e->start_ns / 1e9;
        h->held_ms = (double)e->duration_ns / 1e6;
        const struct dump_event *s = sample_of(d, e);
        if (s) {
            h->sampled = true;
            h->sampled_after_ms = s->at_ns > e->start_ns ? (double)(s->at_ns - e->start_ns) / 1e6 : 0;
            if (model_make_stack(p, &s->stack, s->at_ns, &h->stack) < 0)
                return -1;
        }
    }
    return 0;
}

/* A stall's start comes from the loop thread's tick clock, a wait's from the
 * precise clock: a wait that begins right after the iteration may seem to
 * begin a little before it. */
#define CLOCKS_SLACK_S 0.002

const struct m_holder *model_stall_blocked_by(const struct m_process *p, const struct m_stall *st)
{
    const struct m_holder *best = NULL;
    double start_s = st->start_s - CLOCKS_SLACK_S, end_s = st->start_s + st->duration_ms / 1e3;

    for (size_t i = 0; i < p->nholders; i++) {
        const struct m_holder *h = &p->holders[i];
        if (h->waiter_tid != st->tid || h->wait_start_s < start_s || h->wait_start_s > end_s)
            continue;
        if (!best || h->held_ms > best->held_ms)
            best = h;
    }
    return best;
}

const struct m_holder *model_lock_holder(const struct m_process *p, uint64_t object)
{
    const struct m_holder *best = NULL;

    for (size_t i = 0; i < p->nholders; i++)
        if (p->holders[i].object == object && (!best || p->holders[i].held_ms > best->held_ms))
            best = &p->holders[i];
    return best;
}

void model_holder_story(const struct m_process *p, const struct m_holder *h, char *buf, size_t len)
{
    char waited[32], lock[400], where[400] = "";
    const char *symbol = NULL;

    for (size_t i = 0; i < p->nlocks; i++)
        if (p->locks[i].object == h->object)
            symbol = p->locks[i].label ? p->locks[i].label : p->locks[i].symbol;
    if (symbol)
        snprintf(lock, sizeof(lock), "the %s 0x%llx (%s)", model_object_kind(h->kind),
                 (unsigned long long)h->object, symbol);
    else
        snprintf(lock, sizeof(lock), "the %s 0x%llx", model_object_kind(h->kind), (unsigned long long)h->object);
    size_t at = h->sampled ? frames_culprit(&h->stack) : SIZE_MAX;
    if (at != SIZE_MAX) {
        char f[360];
        frames_describe(h->stack.frames[at], f, sizeof(f));
        snprintf(where, sizeof(where), " in %s", f);
    }
    model_fmt_ms(waited, sizeof(waited), h->held_ms);
    if (h->tid == 0) {
        /* Readers leave no tid in glibc's rwlock: only their count is known. */
        snprintf(buf, len, "waited %s for %s held by %u reader%s", waited, lock, h->readers,
                 h->readers == 1 ? "" : "s");
        return;
    }
    snprintf(buf, len, "waited %s for %s held by thread %u%s%s%s%s", waited, lock, h->tid,
             h->thread[0] ? " (" : "", h->thread, h->thread[0] ? ")" : "", where);
}

void model_free_holders(struct m_process *p)
{
    for (size_t i = 0; i < p->nholders; i++)
        free(p->holders[i].stack.frames);
    free(p->holders);
}

/* queues.c - the task queue table (claimed by name hash, in the dump) and
 * the striped in-flight table that pairs a task's submission with its start. */
#include <sched.h>
#include <string.h>

#include "queues.h"

uint64_t st_queue_hash(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (unsigned i = 0; name[i] && i < ST_QUEUE_NAME_MAX - 1; i++) {
        h ^= (uint8_t)name[i];
        h *= 0x100000001b3ULL;
    }
    return h ? h : 1;
}

static int same_name(const struct st_queue *q, const char *name)
{
    /* A slot just claimed by another thread may not have its name yet. */
    while (!__atomic_load_n(&q->valid, __ATOMIC_ACQUIRE))
        sched_yield();
    return strncmp(q->name, name, ST_QUEUE_NAME_MAX - 1) == 0;
}

struct st_queue *st_queue_get(struct st_queues *qs, const char *name, uint64_t now)
{
    if (qs->table == NULL || name == NULL)
        return NULL;
    uint64_t h = st_queue_hash(name);
    uint32_t mask = qs->capacity - 1;
    for (uint32_t i = 0; i <= mask; i++) {
        struct st_queue *q = &qs->table[(h + i) & mask];
        uint64_t seen = __atomic_load_n(&q->name_hash, __ATOMIC_ACQUIRE);
        if (seen == h && same_name(q, name))
            return q;
        if (seen != 0)
            continue;
        uint64_t expected = 0;
        if (__atomic_compare_exchange_n(&q->name_hash, &expected, h, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            unsigned n = 0;
            while (name[n] && n < ST_QUEUE_NAME_MAX - 1) {
                q->name[n] = name[n];
                n++;
            }
            q->name[n] = '\0';
            q->first_seen_ns = now;
            __atomic_store_n(&q->valid, 1, __ATOMIC_RELEASE);
            __atomic_fetch_add(qs->count, 1, __ATOMIC_RELAXED);
            return q;
        }
        if (expected == h && same_name(q, name))
            return q;
    }
    __atomic_fetch_add(qs->untracked, 1, __ATOMIC_RELAXED);
    return NULL;
}

void st_hist_add(uint64_t *hist, uint64_t *max, uint64_t ns)
{
    __atomic_fetch_add(&hist[st_hist_bucket(ns)], 1, __ATOMIC_RELAXED);
    uint64_t cur = __atomic_load_n(max, __ATOMIC_RELAXED);
    while (ns > cur &&
           !__atomic_compare_exchange_n(max, &cur, ns, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

/* ---- In-flight table ------------------------------------------------------ */

static uint64_t mix(uint32_t queue, uint64_t id)
{
    uint64_t k = id ^ ((uint64_t)queue << 56 | (uint64_t)queue);
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    return k ^ (k >> 33);
}

static struct st_task_stripe *stripe_lock(struct st_tasks *tt, uint64_t h)
{
    struct st_task_stripe *s = &tt->stripe[h % ST_TASK_STRIPES];
    for (unsigned spins = 0; __atomic_exchange_n(&s->lock, 1, __ATOMIC_ACQUIRE); spins++)
        if (spins > 64)
            sched_yield();
    return s;
}

static void stripe_unlock(struct st_task_stripe *s)
{
    __atomic_store_n(&s->lock, 0, __ATOMIC_RELEASE);
}

/* Index of the entry, or of the free slot ending its probe run, or -1. */
static int find(struct st_task_stripe *s, uint64_t h, uint32_t queue_plus1, uint64_t id)
{
    const uint32_t mask = ST_TASK_STRIPE_SLOTS - 1;
    uint32_t start = (uint32_t)(h >> 32) & mask;
    for (uint32_t i = 0; i <= mask; i++) {
        uint32_t at = (start + i) & mask;
        const struct st_task *t = &s->slot[at];
        if (t->queue_plus1 == 0 || (t->queue_plus1 == queue_plus1 && t->id == id))
            return (int)at;
    }
    return -1;
}

int st_task_submit(struct st_tasks *tt, const struct st_task *t)
{
    uint64_t h = mix(t->queue_plus1, t->id);
    struct st_task_stripe *s = stripe_lock(tt, h);
    int rc = -1;
    /* Keep one slot free so that every probe run ends. */
    int at = find(s, h, t->queue_plus1, t->id);
    if (at >= 0 && s->slot[at].queue_plus1 != 0) {
        s->slot[at] = *t;
        rc = 1;
    } else if (at >= 0 && s->used + 1 < ST_TASK_STRIPE_SLOTS) {
        s->slot[at] = *t;
        s->used++;
        rc = 0;
    }
    stripe_unlock(s);
    return rc;
}

int st_task_start(struct st_tasks *tt, uint32_t queue, uint64_t id, uint64_t now,
                  struct st_task *out)
{
    uint64_t h = mix(queue + 1, id);
    struct st_task_stripe *s = stripe_lock(tt, h);
    int rc = -1;
    int at = find(s, h, queue + 1, id);
    if (at >= 0 && s->slot[at].queue_plus1 != 0 && !s->slot[at].started) {
        s->slot[at].started = 1;
        s->slot[at].start_ns = now;
        *out = s->slot[at];
        rc = 0;
    }
    stripe_unlock(s);
    return rc;
}

/* Backward-shift deletion: move later entries of the run into the hole
 * when their home position allows it. */
static void delete_at(struct st_task_stripe *s, uint32_t hole)
{
    const uint32_t mask = ST_TASK_STRIPE_SLOTS - 1;
    for (uint32_t j = (hole + 1) & mask; s->slot[j].queue_plus1 != 0; j = (j + 1) & mask) {
        uint32_t home = (uint32_t)(mix(s->slot[j].queue_plus1, s->slot[j].id) >> 32) & mask;
        /* j may move to the hole if home is not cyclically in (hole, j]. */
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            s->slot[hole] = s->slot[j];
            hole = j;
        }
    }
    memset(&s->slot[hole], 0, sizeof s->slot[hole]);
    s->used--;
}

int st_task_remove(struct st_tasks *tt, uint32_t queue, uint64_t id, struct st_task *out)
{
    uint64_t h = mix(queue + 1, id);
    struct st_task_stripe *s = stripe_lock(tt, h);
    int rc = -1;
    int at = find(s, h, queue + 1, id);
    if (at >= 0 && s->slot[at].queue_plus1 != 0) {
        *out = s->slot[at];
        delete_at(s, (uint32_t)at);
        rc = 0;
    }
    stripe_unlock(s);
    return rc;
}

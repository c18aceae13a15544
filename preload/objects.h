/* objects.h - the sync object table and the pool bookkeeping on it.
 * A plain C unit (format.h only): the criterion tests link it directly.
 */
#ifndef STALLTRACE_OBJECTS_H
#define STALLTRACE_OBJECTS_H

#include <stdint.h>

#include "stalltrace/format.h"

struct st_objects {
    struct st_object *table;
    uint32_t capacity;             /* a power of two */
    uint32_t *count;               /* -> st_file_header.object_count */
    uint64_t *untracked;           /* -> st_file_header.objects_untracked */
};

/* A saturated span that just ended, for the caller to record. */
struct st_span {
    uint64_t start_ns, duration_ns;
    uint32_t members;
    uint32_t retroactive;
};

/* Find the slot of `addr`, claiming one if it has none; NULL when full. */
struct st_object *st_object_get(struct st_objects *objs, uint64_t addr, uint32_t kind,
                                uint64_t now);

/* The slot of `addr` if it has one: never claims (a wake of an object
 * nobody waited on must not fill the table). */
struct st_object *st_object_find(const struct st_objects *objs, uint64_t addr);

/* Pools with no idle member right now, plus those whose idle members were
 * all claimed by wakes not yet taken (feeders.c): a wake that found no
 * waiter looks further only when it is not 0. */
extern uint32_t st_pools_saturated __attribute__((visibility("hidden")));

/* A thread blocks untimed on o (it idles, if o is a work queue).
 * `busy_since` is when the thread started, if known, else 0: the first
 * member of a pool has been busy since then. Returns 1 and fills *span when
 * a saturated span at least `threshold` long ended (all spans are added to
 * o->saturated_ns whatever their length). */
int st_pool_idle_begin(struct st_object *o, unsigned thread_index, uint64_t now,
                       uint64_t busy_since, uint64_t threshold, struct st_span *span);
void st_pool_idle_end(struct st_object *o, uint64_t now);
int st_pool_member_exit(struct st_object *o, unsigned thread_index, uint64_t now,
                        uint64_t threshold, struct st_span *span);

/* Thread `waker_index` woke o (signal, broadcast, post); `by_holder`: a post
 * by a thread that had acquired o, i.e. a lock release. */
void st_object_woken(struct st_object *o, unsigned waker_index, int by_holder);

/* The classification of SPEC.md, from what the object has seen so far. */
int st_object_is_work_queue(const struct st_object *o);

#endif

/* queues.h - the task queue table (in the dump) and the in-flight task table
 * (private) behind the annotation API. A plain C unit: the tests link it. */
#ifndef STALLTRACE_QUEUES_H
#define STALLTRACE_QUEUES_H

#include <stdint.h>

#include "stalltrace/format.h"

struct st_queues {
    struct st_queue *table;
    uint32_t capacity;             /* a power of two */
    uint32_t *count;               /* -> st_file_header.queue_count */
    uint64_t *untracked;           /* -> st_file_header.queues_untracked */
};

/* FNV-1a of the first ST_QUEUE_NAME_MAX - 1 bytes of name; never 0. */
uint64_t st_queue_hash(const char *name);

/* The slot of queue `name`, claiming one if it has none; NULL when full. */
struct st_queue *st_queue_get(struct st_queues *qs, const char *name, uint64_t now);

/* Count one value into a format.h histogram and raise *max to it. */
void st_hist_add(uint64_t *hist, uint64_t *max, uint64_t ns);

/* ---- In-flight tasks: (queue, id) -> submission ------------------------------
 * A fixed table cut in stripes, each an open-addressing hash under its own
 * spinlock (ours alone; held for a few stores). Removal shifts back the
 * entries after it, so no tombstones pile up. */
#define ST_TASK_STRIPES 64u
#define ST_TASK_STRIPE_SLOTS 256u      /* a power of two */

struct st_task {
    uint64_t id;
    uint32_t queue_plus1;          /* 0: free */
    uint32_t submit_tid;
    uint64_t submit_ns;
    uint64_t start_ns;
    uint32_t started;              /* start_ns is set */
    uint32_t stack_ref;            /* st_task_stack token of the submitter, or 0 */
};

struct st_task_stripe {
    uint32_t lock;
    uint32_t used;
    struct st_task slot[ST_TASK_STRIPE_SLOTS];
};

struct st_tasks {
    struct st_task_stripe stripe[ST_TASK_STRIPES];
};

/* Remember a submission (t->queue_plus1 and t->id name it). Returns 0 when
 * new, 1 when it replaced one still in flight, -1 when its stripe is full. */
int st_task_submit(struct st_tasks *tt, const struct st_task *t);

/* A worker took the task: marks it started and copies its entry to *out.
 * Returns 0, or -1 when it is not in flight (or was already started). */
int st_task_start(struct st_tasks *tt, uint32_t queue, uint64_t id, uint64_t now,
                  struct st_task *out);

/* Removes the task and copies its entry to *out; 0, or -1 when unknown. */
int st_task_remove(struct st_tasks *tt, uint32_t queue, uint64_t id, struct st_task *out);

#endif

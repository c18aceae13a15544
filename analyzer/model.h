/* model.h - the report model: what one dump says about its process (threads,
 * loop figures, stalls with named stacks, sites, pools, locks, diagnosis). */
#ifndef STALLTRACE_MODEL_H
#define STALLTRACE_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dump.h"
#include "frames.h"
#include "symbolize.h"

struct m_sample {
    double at_ms;                  /* after the stall's start */
    struct m_stack stack;
};

/* One kind of wrapped call in a stall: how often, how long, and where its
 * longest one was called. */
struct m_stall_call {
    const char *call;
    uint32_t count;
    double total_ms, max_ms;
    struct m_stack stack;
};

struct m_stall {
    uint32_t tid;
    uint64_t iter_seq;
    double start_s, duration_ms;
    const char *call;              /* NULL: CPU-bound (no wrapped call) */
    bool in_progress;              /* still running when a killed process stopped */
    struct m_stack stack;
    struct m_sample *samples;
    size_t nsamples;
    struct m_stall_call *calls;    /* largest total first */
    size_t ncalls;
    double cpu_ms;                 /* on CPU during it; < 0: unknown */
    double runq_ms;                /* runnable, waiting for a CPU; < 0: unknown */
    bool starved;                  /* mostly waiting for a CPU: not the program's doing */
    size_t site;                   /* index into m_process.sites */
};

struct m_slow_call {
    uint32_t tid;
    const char *call;
    double start_s, duration_ms;
    uint64_t object;
    struct m_stack stack;
};

struct m_loop {
    uint64_t iterations;
    uint64_t stalls;               /* the recorder's count, dropped records included */
    double busy_s, utilization, p50_ms, p99_ms, max_ms;
};

struct m_thread {
    uint32_t tid;
    char name[ST_NAME_MAX + 1];
    bool is_loop;
    bool exited;
    int pool;                      /* id of the pool it works in, or -1 */
    struct m_loop loop;            /* meaningful when is_loop */
};

/* A wait on a sync object of at least the threshold (one record; a run of
 * timed retries counts as one wait). */
struct m_lock_wait {
    uint32_t tid;
    const char *call;
    uint16_t kind;                 /* st_object_kind */
    uint32_t retries;
    uint64_t object;
    double start_s, duration_ms;
    struct m_stack stack;
};

/* The thread that held the lock a wait of at least the threshold was for
 * (model_holders.c): named by the recorder when the wait began; its stack
 * when it sampled itself still holding it. */
struct m_holder {
    uint32_t waiter_tid, tid;      /* tid 0: readers held it (an rwlock) */
    uint32_t readers;              /* how many, when the wait began */
    const char *thread;            /* the holder's name ("" when unknown) */
    uint64_t object;
    uint16_t kind;                 /* st_object_kind */
    const char *call;              /* the waiter's call */
    double wait_start_s;
    double held_ms;                /* held after the wait began: the wait's length */
    bool sampled;                  /* stack is the holder's own, taken during the wait */
    double sampled_after_ms;       /* after the wait began */
    struct m_stack stack;
};

/* A span during which every worker of a pool was busy. */
struct m_span {
    double start_s, duration_ms;
    uint32_t members;              /* live members, as the recorder counted them */
    bool retroactive;              /* dated back to the first worker's start */
    bool in_progress;              /* still saturated when the recording ended */
};

/* What a pool's workers were busy in: slow calls and lock waits grouped by
 * call and stack. */
struct m_busy {
    const char *call;
    struct m_stack stack;          /* borrowed from its first call */
    size_t count;
    double total_ms, max_ms;
    double saturated_ms;           /* the part inside the pool's saturation spans */
};

/* A distribution of per-task times (queue wait or run time). */
struct m_dist {
    bool known;                    /* false: no task was seen (null in JSON) */
    bool exact;                    /* measured per task, not estimated */
    uint64_t count;
    double p50_ms, p99_ms, max_ms, total_ms;
};

/* A task whose queue wait reached the threshold (one record each). */
struct m_task_wait {
    uint64_t task_id;
    uint32_t submit_tid, worker_tid;
    double submit_s, start_s, wait_ms;
    const char *stack_kind;        /* "own", "shared" (an earlier submission's) or NULL */
    struct m_stack stack;          /* the submitter's */
};

/* A queue named through the annotation API (annotate.h, the Python hook). */
struct m_queue {
    char name[ST_QUEUE_NAME_MAX + 1]; /* without the hook's "#kind:max" suffix */
    const char *pool_kind;         /* from that suffix ("anyio", ...), or NULL */
    uint32_t max_threads;          /* from that suffix; 0: unknown */
    uint32_t slot;                 /* in the dump's queue table */
    int pool;                      /* id of the pool whose workers started its tasks, or -1 */
    uint64_t submitted, started, finished, discarded, unmatched, long_waits;
    uint64_t waiting, running;     /* in flight when the recording ended */
    uint32_t peak_running;
    struct m_dist wait, run;
    uint32_t *workers;             /* tids of the threads that started its tasks */
    size_t nworkers;
    struct m_task_wait *longs;     /* its long waits, by submission time */
    size_t nlong;
    bool long_complete;            /* every long wait has its record (none dropped) */
};

/* Who fed a saturated pool: the submissions (wakes of its queue no idle
 * worker was left to take) that were recorded with a stack, grouped by the
 * frame a person should look at. */
struct m_feeder {
    char *where;                   /* "handle_upload (app.js:40)", or "" when nothing is named */
    size_t count;                  /* submissions with this culprit frame */
    uint32_t tid;                  /* the submitter of the first of them */
    const char *thread;            /* its name */
    const char *call;              /* the wake: "pthread_cond_signal", ... */
    struct m_stack stack;          /* the first one's */
};

struct m_pool {
    int id;
    /* Task queues whose tasks its workers ran (indices into m_process.queues),
     * and their merged distributions; unknown when it has none. */
    size_t *queues;
    size_t nqueues;
    struct m_dist queue_wait, run;
    uint64_t *objects;             /* its work queues: several when each worker parks on its own */
    size_t nobjects;
    const char *object_kind;       /* of its work queue: "cond" or "sem" */
    const char *kind;              /* what it is: "cpython-executor", "anyio", "twisted",
                                    * "libuv", "v8-platform", "python", "c" */
    uint32_t max_threads;          /* the most threads it may start; 0: unknown */
    /* Why its spans count as saturation: "queue_wait" (tasks waited a
     * threshold or more), "fixed_size" (all busy and it never starts more
     * threads), "largest_size" (all busy after it stopped growing). */
    const char *saturation_basis;
    uint32_t *tids;                /* its workers, by thread table order */
    size_t nthreads;
    size_t added_by_routine;       /* workers never seen idle, joined by start routine */
    double busy_ratio;             /* 1 - idle / lifetime over its workers */
    double busy_s;                 /* worker-seconds not idle */
    double saturated_s;
    struct m_span *saturations;    /* by start */
    size_t nsaturations;
    double spans_s, longest_ms;    /* sum and max of the spans */
    struct m_busy *busy_in;        /* by total time, largest first */
    size_t nbusy;
    /* Of the worker time inside saturation spans (or of busy_s without
     * spans): the share in busy_in[0], and in all wrapped calls together. */
    double top_share, wrapped_share;
    bool shares_of_saturation;
    /* Who fed it while saturated (model_feeders.c): groups, most first;
     * fed_total counts every feed, with a stack or not (fed_by covers at
     * most ST_FEED_STACKS of them between two drains of its queue). */
    struct m_feeder *fed_by;
    size_t nfed_by;
    uint64_t fed_total;
};

struct m_lock {
    uint64_t object;
    char *symbol;                  /* "_PyRuntime+0x1a8": the data symbol it lies in, or NULL */
    const char *label;             /* "GIL", or NULL */
    const char *kind;              /* "mutex", "rwlock", "cond", "sem" */
    uint32_t flags;                /* st_object_flags, when in the object table */
    uint64_t contentions;          /* waits that blocked */
    uint64_t long_waits;           /* waits of at least the threshold (recorded with a stack) */
    uint64_t timeouts;             /* timed waits that timed out */
    uint64_t releases, handoffs;   /* posts by holders / wakes by others */
    size_t waiters;                /* distinct threads among the long waits */
    double wait_total_ms, wait_max_ms;
    const char *call;              /* call of the top stack */
    struct m_stack stack;          /* the long wait's stack seen most often (borrowed) */
    /* Whether it matters (locks.c): the waits that show threads competing
     * (the GIL: its timed-out waits), as a share of the thread-seconds of
     * the threads that blocked on locks; a culprit when that share is real
     * or one wait reached the threshold, and it is the program's own. */
    double contended_ms, wait_share;
    char *internal;                /* "libuv", "pool 0's queue": whose own object it is, or NULL */
    bool culprit;
    /* A thread idling on its own object with timeouts (jemalloc's
     * background thread, a timer thread): a sleep, not a lock anyone
     * competed for; reports leave it out. */
    bool idle;
};

/* Stalls grouped by where they blocked: call + named stack. */
struct m_site {
    const char *call;
    struct m_stack stack;          /* borrowed from its first stall */
    struct m_stack key;            /* what its stalls share (frames_place_key) */
    bool starved;                  /* its stalls mostly waited for a CPU */
    uint64_t call_count;           /* calls of `call` in its stalls */
    double call_total_ms;          /* and the time in them */
    size_t count;
    double max_ms, total_ms;
};

struct m_diagnosis {
    const char *culprit;           /* "event_loop_blocking", ... */
    char *summary;                 /* one sentence */
    double weight_ms;              /* time it explains: the worst first */
};

struct m_process {
    const struct dump *dump;
    struct symbolizer *sym;
    struct py_namer *py;           /* names and splices Python frames (pyframes.c) */
    const char *python_note;       /* why Python frames are missing, or NULL */
    int32_t pid, parent_pid;
    const char *exe;
    int argc;
    char **argv;
    double duration_s, threshold_ms;
    bool complete;
    bool attached;                 /* recorded by `stalltrace attach` */
    uint64_t dropped;
    uint32_t end_reason;
    int32_t end_signal;

    struct m_thread *threads;
    size_t nthreads;
    struct m_stall *stalls;        /* by start time */
    size_t nstalls;
    struct m_slow_call *slow_calls;
    size_t nslow_calls;
    struct m_site *sites;          /* by total time, largest first */
    size_t nsites;
    struct m_lock_wait *lock_waits;/* by position in the ring */
    size_t nlock_waits;
    struct m_holder *holders;      /* by position in the ring */
    size_t nholders;
    struct m_pool *pools;          /* by id */
    size_t npools;
    struct m_lock *locks;          /* by total wait, largest first */
    size_t nlocks;
    struct m_queue *queues;        /* by slot */
    size_t nqueues;
    struct m_diagnosis *diagnosis;
    size_t ndiagnosis;
};

struct model_options {
    double threshold_ms;           /* drop stalls shorter than this; < 0: keep all */
    bool native_only;              /* raw native stacks: no Python frames spliced in */
    const char *perf_map_dir;      /* NULL: /tmp */
};

/* Build the model of a loaded dump; NULL only when out of memory. */
struct m_process *model_build(const struct dump *d, const struct model_options *opt);
void model_free(struct m_process *p);

/* The holder of the lock stall st waited for longest, or NULL (model_holders.c). */
const struct m_holder *model_stall_blocked_by(const struct m_process *p, const struct m_stall *st);
/* The holder of the lock at object held longest, or NULL (model_holders.c). */
const struct m_holder *model_lock_holder(const struct m_process *p, uint64_t object);
/* "waited 310 ms for the mutex 0x... (cache_lock+0x0) held by thread 4242
 * (worker) in flush_cache (cache.c:88)": what a waiter's sentence goes on with. */
void model_holder_story(const struct m_process *p, const struct m_holder *h, char *buf, size_t len);

/* Quantile q (0..1) in ns of a busy-time histogram, interpolated within its
 * bucket and never above max_ns (when max_ns > 0). 0 for an empty one. */
double model_hist_quantile(const uint64_t *hist, uint64_t max_ns, double q);



/* Human durations: "0.40 ms", "3.5 ms", "301 ms", "1.2 s". */
void model_fmt_ms(char *buf, size_t len, double ms);


/* Name of an st_object_kind: "mutex", "rwlock", "cond", "sem" or "unknown". */
const char *model_object_kind(unsigned kind);


#endif /* STALLTRACE_MODEL_H */

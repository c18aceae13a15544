/* format.h - the stalltrace dump format: the contract between the recorder
 * (preload/) that writes it and the analyzer (analyzer/) that reads it.
 *
 * A dump is one file, written by the recorder through a MAP_SHARED mapping so
 * that whatever was written survives the process dying, even by SIGKILL.
 * All integers are little-endian host order of the recording machine (the
 * analyzer refuses a dump whose byte order does not match), all offsets are
 * from the start of the file, and every section is 64-byte aligned.
 *
 *   +--------------------+ 0
 *   | st_file_header     |  magic, version, section table, clocks, counters
 *   +--------------------+ process_offset
 *   | st_process         |  pid, exe, argv
 *   +--------------------+ modules_offset
 *   | st_module[cap]     |  loaded objects with build-ids (append-only)
 *   +--------------------+ threads_offset
 *   | st_thread[cap]     |  per-thread counters, loop histogram, live state
 *   +--------------------+ objects_offset
 *   | st_object[cap]     |  sync objects threads blocked on: locks, work queues
 *   +--------------------+ queues_offset (0: none; optional, see st_queue)
 *   | st_queue[cap]      |  annotated task queues: counts, wait and run histograms
 *   +--------------------+ ring_offset
 *   | event ring         |  variable-size records (st_record), wraps around
 *   +--------------------+ file_size
 *
 * Readers must treat every byte as untrusted: a dump may be truncated, still
 * being written, torn by a crash, or hostile.
 *
 * Versioning: ST_FORMAT_VERSION changes whenever any layout here changes;
 * the analyzer reads exactly the versions it knows.
 */
#ifndef STALLTRACE_FORMAT_H
#define STALLTRACE_FORMAT_H

#include <stdint.h>

#define ST_MAGIC "STALLTRC"          /* 8 bytes, no terminator in the file */
#define ST_FORMAT_VERSION 1u
#define ST_ENDIAN_MARK 0x01020304u   /* reads 0x04030201 on the other byte order */

#define ST_SECTION_ALIGN 64u
#define ST_RECORD_ALIGN 16u
#define ST_MAX_FRAMES 96u            /* frames kept per stack */
#define ST_NAME_MAX 16u              /* thread name, as the kernel's comm */
#define ST_PATH_MAX 448u             /* module path kept per module */
#define ST_BUILD_ID_MAX 32u
#define ST_EXE_MAX 1024u
#define ST_ARGV_MAX 4096u

/* ---- Wrapped calls -------------------------------------------------------
 * One id per wrapped libc function, so records store 2 bytes instead of a
 * name. Aliases (open64, __read_chk, ...) report the id of the plain call,
 * because a user asks "which call blocked", not which ABI variant was used.
 * Ids are part of the format: append only.
 */
#define ST_CALLS(X)                                                         \
    X(NONE, "")                                                             \
    X(EPOLL_WAIT, "epoll_wait") X(EPOLL_PWAIT, "epoll_pwait")               \
    X(EPOLL_PWAIT2, "epoll_pwait2") X(POLL, "poll") X(PPOLL, "ppoll")       \
    X(SELECT, "select") X(PSELECT, "pselect")                               \
    X(READ, "read") X(WRITE, "write") X(RECV, "recv")                       \
    X(RECVFROM, "recvfrom") X(RECVMSG, "recvmsg") X(SEND, "send")           \
    X(SENDTO, "sendto") X(SENDMSG, "sendmsg") X(CONNECT, "connect")         \
    X(ACCEPT, "accept") X(ACCEPT4, "accept4") X(NANOSLEEP, "nanosleep")     \
    X(CLOCK_NANOSLEEP, "clock_nanosleep") X(USLEEP, "usleep")               \
    X(SLEEP, "sleep") X(FSYNC, "fsync") X(FDATASYNC, "fdatasync")           \
    X(OPEN, "open") X(OPENAT, "openat") X(GETADDRINFO, "getaddrinfo")       \
    X(FLOCK, "flock") X(WAITPID, "waitpid") X(WAIT4, "wait4")               \
    X(PREAD, "pread") X(PWRITE, "pwrite") X(READV, "readv")                 \
    X(WRITEV, "writev")                                                     \
    X(MUTEX_LOCK, "pthread_mutex_lock")                                     \
    X(MUTEX_TIMEDLOCK, "pthread_mutex_timedlock")                           \
    X(RWLOCK_RDLOCK, "pthread_rwlock_rdlock")                               \
    X(RWLOCK_WRLOCK, "pthread_rwlock_wrlock")                               \
    X(COND_WAIT, "pthread_cond_wait")                                       \
    X(COND_TIMEDWAIT, "pthread_cond_timedwait")                             \
    X(COND_CLOCKWAIT, "pthread_cond_clockwait")                             \
    X(SEM_WAIT, "sem_wait") X(SEM_TIMEDWAIT, "sem_timedwait")               \
    X(SEM_CLOCKWAIT, "sem_clockwait")                                     \
    X(FUTEX_WAIT, "futex_wait")                                             \
    X(COND_SIGNAL, "pthread_cond_signal")                                   \
    X(COND_BROADCAST, "pthread_cond_broadcast") X(SEM_POST, "sem_post")

enum st_call {
#define ST_CALL_ENUM(id, name) ST_CALL_##id,
    ST_CALLS(ST_CALL_ENUM)
#undef ST_CALL_ENUM
    ST_CALL_COUNT
};

/* ---- Busy-time histogram -------------------------------------------------
 * Log-linear in microseconds: values below 8 us get one bucket per us; from
 * there on each power of two is split into 8 linear sub-buckets, so a bucket
 * is at most 12.5% wide relative to its floor. The last bucket holds all
 * from 2^31 us (~36 min) on.
 */
#define ST_HIST_SUB_BITS 3u
#define ST_HIST_SUB (1u << ST_HIST_SUB_BITS)
#define ST_HIST_OCTAVES 28u
#define ST_HIST_BUCKETS (ST_HIST_SUB + ST_HIST_OCTAVES * ST_HIST_SUB + 1u) /* 233 */
#define ST_HIST_UNIT_NS 1000u

static inline unsigned st_hist_bucket(uint64_t ns)
{
    uint64_t us = ns / ST_HIST_UNIT_NS;
    if (us < ST_HIST_SUB)
        return (unsigned)us;
    unsigned octave = 63u - (unsigned)__builtin_clzll(us) - ST_HIST_SUB_BITS;
    if (octave >= ST_HIST_OCTAVES)
        return ST_HIST_BUCKETS - 1u;
    unsigned sub = (unsigned)(us >> octave) & (ST_HIST_SUB - 1u);
    return ST_HIST_SUB + octave * ST_HIST_SUB + sub;
}

/* Lower bound of a bucket in ns (its upper bound is the next bucket's). */
static inline uint64_t st_hist_bucket_floor_ns(unsigned bucket)
{
    if (bucket < ST_HIST_SUB)
        return (uint64_t)bucket * ST_HIST_UNIT_NS;
    if (bucket >= ST_HIST_BUCKETS - 1u)
        return ((uint64_t)1 << (ST_HIST_OCTAVES + ST_HIST_SUB_BITS)) * ST_HIST_UNIT_NS;
    unsigned octave = (bucket - ST_HIST_SUB) / ST_HIST_SUB, sub = (bucket - ST_HIST_SUB) % ST_HIST_SUB;
    uint64_t base = (uint64_t)1 << (octave + ST_HIST_SUB_BITS);
    return (base + (base >> ST_HIST_SUB_BITS) * sub) * ST_HIST_UNIT_NS;
}

/* ---- File header --------------------------------------------------------- */

enum st_end_reason {
    ST_END_RUNNING = 0,     /* still recording, or killed without a chance to say */
    ST_END_EXIT = 1,        /* exit() or return from main: the dump is complete */
    ST_END_EXEC = 2,        /* the process exec'd another image (which records anew) */
    ST_END_FATAL_SIGNAL = 3,/* a fatal signal (SIGSEGV, SIGABRT, ...) was seen */
    ST_END_STEPPED_ASIDE = 4,/* the program filtered its system calls (seccomp):
                               the recorder stopped there; the dump is complete to then */
    ST_END_DETACHED = 5,    /* `stalltrace detach` (or attach --duration) ended it: complete */
};

enum st_file_flags {
    ST_FLAG_COMPLETE = 1u << 0,      /* set last, on a clean end: all counters final */
    ST_FLAG_SAMPLING = 1u << 1,      /* in-stall sampling by signal was active */
    ST_FLAG_FORKED_CHILD = 1u << 2,  /* this process is a fork() of parent_pid */
    ST_FLAG_ATTACHED = 1u << 3,      /* recorded by `stalltrace attach`, not from the start */
};

/* One lapped write's damage mark: its bytes covered ring offsets
 * [off, off + len) and were written before ring_head reached `until`, so a
 * record reserved below `until` that overlaps those offsets may hold them.
 * span = off | (uint64_t)len << 32 (rings are at most 4 GiB); until is 0 for
 * a free slot and 1 while a writer fills it (never a real head). */
#define ST_RING_DAMAGE_SLOTS 4u
struct st_ring_damage {
    uint64_t span;
    uint64_t until;
};

struct st_file_header {
    char magic[8];                 /* ST_MAGIC */
    uint32_t version;              /* ST_FORMAT_VERSION */
    uint32_t endian;               /* ST_ENDIAN_MARK */
    uint32_t header_size;          /* sizeof(struct st_file_header) */
    uint32_t flags;                /* st_file_flags; written last on a clean end */
    uint64_t file_size;            /* the whole dump; must equal the file's size */

    /* Section table. */
    uint64_t process_offset, process_size;   /* one st_process */
    uint64_t modules_offset;
    uint32_t module_size, module_capacity;   /* sizeof(st_module), slots */
    uint64_t threads_offset;
    uint32_t thread_size, thread_capacity;   /* sizeof(st_thread), slots */
    uint64_t ring_offset, ring_size;         /* ring_size: power of two */

    /* Clocks: every *_ns time in the dump is CLOCK_MONOTONIC nanoseconds
     * since start_mono_ns; start_real_ns is the wall clock at that moment. */
    uint64_t start_mono_ns, start_real_ns;
    uint64_t last_update_ns;       /* refreshed by the watchdog and at the end */

    /* Recording parameters, as in force. */
    uint64_t threshold_ns;         /* stall / slow-call threshold */
    uint64_t sample_interval_ns;   /* spacing of in-stall samples */
    int32_t sample_signal;         /* 0: in-stall sampling off */
    uint32_t end_reason;           /* st_end_reason */
    int32_t end_signal;            /* the fatal signal, for ST_END_FATAL_SIGNAL */
    uint32_t reserved0;

    /* Live counters (atomic in the recorder). */
    uint64_t ring_head;            /* bytes ever reserved in the ring */
    uint64_t ring_records;         /* records ever reserved (excl. padding) */
    uint32_t module_count;         /* module slots in use (<= capacity) */
    uint32_t thread_count;         /* thread slots ever claimed (<= capacity) */
    uint64_t threads_untracked;    /* threads that found the table full */
    uint64_t modules_untracked;    /* modules that found the table full */
    uint64_t samples_skipped;      /* samples not taken: unsafe moment */

    char recorder_version[32];     /* e.g. "stalltrace 0.1.0" */
    char unwinder[32];             /* e.g. "libunwind 1.6" */

    /* Sync object table (an open-addressing hash keyed by address). */
    uint64_t objects_offset;
    uint32_t object_size, object_capacity;
    uint32_t object_count;         /* slots in use */
    uint32_t reserved1;
    uint64_t objects_untracked;    /* objects that found the table full */

    /* Task queue table (annotation API, see st_queue); a capacity of 0
     * means none (a dump written before it existed). */
    uint64_t queues_offset;
    uint32_t queue_size, queue_capacity;
    uint32_t queue_count;          /* slots claimed (<= capacity) */
    uint32_t reserved2;
    uint64_t queues_untracked;     /* marks for a queue that found the table full */
    uint64_t tasks_untracked;      /* submissions that found the in-flight table full */

    /* The writer, as the kernel knows it (0: unknown): its pid namespace
     * (inode of /proc/self/ns/pid), its start time (clock ticks since boot)
     * and the boot id. A process replaces only a file with these of its own. */
    uint64_t owner_pidns, owner_start_ticks;
    uint8_t owner_boot_id[16];

    /* Lapped writers (see "Lapped writers" at the event ring): where their
     * late bytes may have landed. All zero in a dump none was lapped in. */
    uint64_t ring_lapped;          /* writes a newer lap overtook before they were done */
    uint64_t ring_suspect_below;   /* damage marks that found no free slot: every record
                                      reserved below this is suspect */
    struct st_ring_damage ring_damage[ST_RING_DAMAGE_SLOTS];
    uint8_t reserved[152 - 16 - 16 * ST_RING_DAMAGE_SLOTS];
};

/* ---- Process facts --------------------------------------------------------- */

struct st_process {
    int32_t pid, parent_pid;       /* parent_pid: getppid(), or the fork parent */
    uint32_t argc;                 /* strings in argv below */
    uint32_t argv_len;             /* bytes used in argv, NULs included */
    char exe[ST_EXE_MAX];          /* /proc/self/exe target, NUL-terminated */
    char argv[ST_ARGV_MAX];        /* argc NUL-terminated strings; truncated to fit */
};

/* ---- Module map ----------------------------------------------------------
 * One slot per loaded object (main executable, shared libraries, vdso),
 * appended on start-up and after every dlopen. A slot is valid once its
 * `valid` word is 1 (written last). The same range may reappear after a
 * dlclose/dlopen: the newest slot loaded before an event's time wins.
 */
enum st_module_flags {
    ST_MODULE_SELF = 1u << 0,      /* the recorder itself: its frames are hidden */
    ST_MODULE_MAIN = 1u << 1,      /* the main executable */
    ST_MODULE_VDSO = 1u << 2,      /* kernel vdso: no file on disk */
};

struct st_module {
    uint32_t valid;                /* 1 once the slot is fully written */
    uint32_t flags;                /* st_module_flags */
    uint64_t start, end;           /* address range of its PT_LOAD segments */
    uint64_t bias;                 /* load bias (dlpi_addr): file vaddr + bias = address */
    uint64_t loaded_ns;            /* when it was seen */
    uint32_t build_id_len;         /* 0: none found */
    uint8_t build_id[ST_BUILD_ID_MAX];
    char path[ST_PATH_MAX];        /* file path, NUL-terminated */
};

/* ---- Thread table --------------------------------------------------------
 * One slot per thread the recorder has seen. Written only by the owning
 * thread (live_* fields also read by the recorder's watchdog); readers see
 * counters as of the last write, which is all a crash leaves.
 */
enum st_thread_flags {
    ST_THREAD_LOOP = 1u << 0,      /* has a loop wait: a loop thread */
    ST_THREAD_EXITED = 1u << 1,
    ST_THREAD_MAIN = 1u << 2,      /* tid == pid */
};

struct st_thread {
    uint32_t tid;                  /* 0: free slot */
    uint32_t flags;                /* st_thread_flags */
    char name[ST_NAME_MAX];        /* comm, as last seen */
    uint64_t start_routine;        /* pthread_create start routine, or 0 */
    uint64_t created_ns, exited_ns;

    /* Its loop wait, once it is a loop thread. */
    uint16_t loop_call;            /* st_call of the loop wait */
    uint16_t reserved0;
    int32_t loop_fd;               /* epoll fd, or -1 for poll/select */
    uint64_t loop_site;            /* return address of the loop wait (poll/select) */

    /* Loop figures: an iteration is the busy time between two loop waits. */
    uint64_t iterations;           /* completed iterations */
    uint64_t busy_ns, idle_ns;     /* totals */
    uint64_t max_busy_ns;
    uint64_t stalls;               /* iterations with busy >= threshold */
    uint64_t busy_hist[ST_HIST_BUCKETS];

    /* Live state, so a dump of a killed process shows a stall in progress. */
    uint64_t live_iter_seq;        /* number of the iteration running now */
    uint64_t live_iter_start_ns;   /* 0 while the thread is in its loop wait */
    uint16_t live_call;            /* during a stall: the wrapped call it is in, or 0 */
    uint16_t reserved1[3];
    uint64_t live_call_start_ns;   /* unused, 0: kept for the layout of version 1 */
    uint64_t slow_calls;           /* wrapped calls >= threshold outside loops */

    /* Pool membership: the work queue object it idles on (see st_object). */
    uint64_t idle_object;          /* address, or 0 */
    uint64_t pool_idle_ns;         /* total time blocked idle on it */
    uint64_t live_idle_since_ns;   /* 0 unless blocked idle right now */
    uint64_t lock_wait_ns;         /* total time blocked on locks */
    uint64_t stall_ns;             /* busy time of the `stalls` iterations; 0 in dumps
                                    * recorded before it was added (same version) */
    uint8_t reserved[216];
};

/* ---- Sync objects ----------------------------------------------------------
 * One slot per mutex, rwlock, condition variable or semaphore that some
 * thread blocked on (uncontended objects never get one). Slots are claimed
 * by CAS on `addr` and never freed: an address reused by another object
 * after free() adds to the same slot.
 *
 * Classification (SPEC.md): an object is a work queue when some thread that
 * never waits on it wakes it (signal, broadcast, or a post by a thread that
 * does not hold it); it is a lock when its posts are releases by holders, and
 * contended when its waits are timed and keep timing out (CPython's GIL).
 * The threads that block untimed on a work queue form a pool; a pool with no
 * idle member is saturated.
 */
enum st_object_kind {
    ST_OBJ_MUTEX = 1, ST_OBJ_RWLOCK = 2, ST_OBJ_COND = 3, ST_OBJ_SEM = 4,
};

enum st_object_flags {
    ST_OBJ_HANDOFF = 1u << 0,      /* woken by a non-member: a work queue */
    ST_OBJ_RELEASED = 1u << 1,     /* posted by holders: used as a lock */
    ST_OBJ_TIMED_RETRY = 1u << 2,  /* timed waits that time out and retry */
    ST_OBJ_FUTEX_SEEN = 1u << 3,   /* a futex word waited on through syscall() */
    ST_OBJ_FUTEX_COUNTER = 1u << 4, /* ... with a value other than "locked, contended" */
};

#define ST_THREAD_BITS 512u        /* thread slots a member bitmap covers */

struct st_object {
    uint64_t addr;                 /* 0: free slot */
    uint32_t kind;                 /* st_object_kind */
    uint32_t flags;                /* st_object_flags */
    uint64_t first_seen_ns;

    /* Blocking waits (all kinds). */
    uint64_t waits;                /* waits that blocked */
    uint64_t wait_ns, max_wait_ns;
    uint64_t long_waits;           /* waits >= threshold (recorded with a stack) */
    uint64_t timeouts;             /* timed waits that returned ETIMEDOUT */
    uint64_t handoffs, releases;   /* wakes by non-holders / posts by holders */

    /* Pool bookkeeping (cond and sem waited on without a timeout). */
    uint32_t members;              /* distinct threads that blocked untimed */
    uint32_t live_members;         /* of those, not exited */
    uint32_t idle;                 /* blocked untimed right now */
    uint32_t lock;                 /* recorder's spinlock for the fields here */
    uint64_t saturated_ns;         /* total time with live members, none idle */
    uint64_t saturations;          /* saturated spans >= threshold */
    uint64_t live_saturated_since_ns; /* 0 unless saturated right now */
    uint64_t member_bits[ST_THREAD_BITS / 64]; /* thread slot indices */
    uint64_t waker_bits[ST_THREAD_BITS / 64];
};

/* ---- Task queues ------------------------------------------------------------
 * One slot per queue named through the annotation API (annotate.h): a
 * program or runtime binding marks each task submitted, started (a worker
 * took it) and finished. Queue wait = start - submit; run time = finish -
 * start. A slot is claimed by CAS on `name_hash` and valid once `valid` is 1;
 * counters are atomic. Waits of at least the threshold are also recorded one
 * by one (ST_REC_TASK_WAIT) with the submitter's stack when it was taken.
 *
 * worker_bits names (by thread slot index) the threads that started its
 * tasks: that is how the analyzer ties a queue to the pool whose workers
 * ran them, whatever primitive those workers idle on.
 */
#define ST_QUEUE_NAME_MAX 48u

struct st_queue {
    uint64_t name_hash;            /* 0: free slot (FNV-1a of the name, never 0) */
    uint32_t valid;                /* 1 once name is written */
    uint32_t peak_running;         /* most tasks ever running at once */
    char name[ST_QUEUE_NAME_MAX];  /* NUL-terminated, truncated to fit */
    uint64_t first_seen_ns;
    uint64_t submitted, started, finished;
    uint64_t discarded;            /* submitted, then dropped unstarted (cancelled) */
    uint64_t unmatched;            /* starts/finishes of tasks not in flight: submitted
                                      before recording, or the in-flight table was full */
    uint64_t long_waits;           /* waits >= threshold: one ST_REC_TASK_WAIT each */
    uint64_t wait_ns, max_wait_ns; /* over started tasks */
    uint64_t run_ns, max_run_ns;   /* over finished tasks */
    uint64_t wait_hist[ST_HIST_BUCKETS];
    uint64_t run_hist[ST_HIST_BUCKETS];
    uint64_t worker_bits[ST_THREAD_BITS / 64];    /* thread slots that started tasks */
    uint64_t submitter_bits[ST_THREAD_BITS / 64]; /* thread slots that submitted */
};

/* ---- Event ring ------------------------------------------------------------
 * ring_size bytes at ring_offset, a power of two. Writers reserve space by
 * advancing ring_head atomically; a record at absolute position P (P counts
 * bytes since the start, never wraps) lives at ring offset P % ring_size, is
 * ST_RECORD_ALIGN-aligned and may wrap around the end of the ring (its bytes
 * continue at offset 0); its 16-byte header never wraps.
 *
 * Commit protocol: a writer fills size, type and the payload, then stores P
 * into `pos` with release ordering. A reader accepts a record at P only if
 * magic matches, pos == P and size is sane; anything else there is a torn or
 * stale record. The live window is [max(0, head - ring_size), head): records
 * before it were overwritten. dropped = ring_records - records accepted.
 * Resynchronising after a torn record: step ST_RECORD_ALIGN bytes forward
 * until a header commits at its own position.
 *
 * Lapped writers: a writer delayed (preempted, stopped) between reserving P
 * and its last store while others reserve a whole ring_size more stores its
 * bytes over records of a newer lap, whose headers stay committed. So after
 * its commit a writer reads ring_head again; past P + ring_size it was
 * lapped: it counts itself in ring_lapped and leaves a damage mark
 * (st_ring_damage; when no slot is free, raises ring_suspect_below to that
 * head instead). A reader rejects, as dropped, every committed record that
 * a mark covers (reserved below its `until`, overlapping its offsets) and
 * every one reserved below ring_suspect_below. A record reserved at or past
 * the head a lapped writer read was written after all of its bytes.
 */
#define ST_RECORD_MAGIC 0x5354u    /* "ST" */

/* The reader's half of "Lapped writers": 1 if the committed record at
 * absolute position `pos`, `size` bytes, may hold a lapped writer's bytes
 * (reject it as dropped). Header fields are untrusted: they can only make
 * a reader reject records. */
static inline int st_ring_record_suspect(const struct st_file_header *h, uint64_t pos, uint64_t size)
{
    uint64_t mask = h->ring_size - 1, at = pos & mask;
    if (pos < h->ring_suspect_below)
        return 1;
    for (unsigned i = 0; i < ST_RING_DAMAGE_SLOTS; i++) {
        uint64_t until = h->ring_damage[i].until, span = h->ring_damage[i].span;
        uint64_t off = span & 0xffffffffu, len = span >> 32;
        if (until == 1)
            return 1;              /* a mark half written (the writer died): unknown */
        if (pos < until && (((off - at) & mask) < size || ((at - off) & mask) < len))
            return 1;
    }
    return 0;
}

enum st_record_type {
    ST_REC_PAD = 0,                /* never written; reserved */
    ST_REC_STALL = 1,              /* struct st_rec_stall */
    ST_REC_SAMPLE = 2,             /* struct st_rec_sample */
    ST_REC_SLOW_CALL = 3,          /* struct st_rec_slow_call */
    ST_REC_THREAD_NAME = 4,        /* struct st_rec_thread_name */
    ST_REC_LOCK_WAIT = 5,          /* struct st_rec_lock_wait */
    ST_REC_SATURATION = 6,         /* struct st_rec_saturation */
    ST_REC_PYCODE = 7,             /* struct st_rec_pycode */
    ST_REC_JITSYM = 8,             /* struct st_rec_jitsym */
    ST_REC_TASK_WAIT = 9,          /* struct st_rec_task_wait */
    ST_REC_STALL_CALL = 10,        /* struct st_rec_stall_call */
    ST_REC_STALL_CPU = 11,         /* struct st_rec_stall_cpu */
    ST_REC_CODE_COPY = 12,         /* struct st_rec_code_copy */
    ST_REC_LOCK_HOLDER = 13,       /* struct st_rec_lock_holder */
    ST_REC_HOLDER_SAMPLE = 14,     /* struct st_rec_holder_sample */
    ST_REC_POOL_FEED = 15,         /* struct st_rec_pool_feed */
    ST_REC_POOL_DRAIN = 16,        /* struct st_rec_pool_drain */
};

struct st_record {
    uint64_t pos;                  /* absolute position; the commit word */
    uint32_t size;                 /* whole record incl. header, ST_RECORD_ALIGN multiple */
    uint16_t type;                 /* st_record_type */
    uint16_t magic;                /* ST_RECORD_MAGIC */
};

/* How a stack was taken, so the analyzer knows which frames are exact PCs.
 * In every stack frame 0 is an exact PC (the wrapped libc function's entry,
 * or the interrupted instruction); frames 1.. are return addresses, from
 * which the analyzer subtracts one before looking up a line. */
enum st_unwinder {
    ST_UNWIND_LIBUNWIND = 1,       /* libunwind, after a call returned */
    ST_UNWIND_LIBUNWIND_SIGNAL = 2,/* libunwind, from a signal's context */
};

struct st_stack {
    uint16_t nframes;              /* <= ST_MAX_FRAMES */
    uint8_t unwinder;              /* st_unwinder */
    uint8_t truncated;             /* 1: deeper frames were cut */
    uint16_t npython;              /* <= ST_MAX_PYFRAMES */
    uint8_t python;                /* st_python_walk: how the Python walk went */
    uint8_t flags;                 /* st_stack_flags: what follows the frames */
    /* uint64_t frames[nframes] follows, then struct st_pyframe[npython],
       then a uint64_t perf map length if ST_STACK_JIT_MARK */
};

/* V8 reuses code addresses and its perf map only grows, so an address may
 * have several entries: the one naming a frame is the last written before
 * the stack was taken. A stack with frames outside every module notes how
 * long the perf map was then (0: there was none); the analyzer names its JIT
 * frames from the entries whose line ended within it (st_rec_jitsym). */
enum st_stack_flags {
    ST_STACK_JIT_MARK = 1u << 0,
};

/* ---- CPython frames ----------------------------------------------------------
 * When the thread runs CPython, a stack also carries its Python frames,
 * innermost first, read in process from the interpreter's frame chain. A
 * frame names its code object by address; the code object's names and line
 * table are written once per address as an ST_REC_PYCODE record, so the
 * analyzer can name the frame and compute its line offline.
 *
 * Splicing: every native _PyEval_EvalFrameDefault frame runs one or more
 * Python frames; the one that entered it carries ST_PYFRAME_ENTRY. The
 * innermost eval frame runs the Python frames up to and including the first
 * ENTRY frame, the next eval frame the following run, and so on.
 *
 * CRuby (3.1) frames travel the same way, in the same array and status
 * (`python` says how the script walk went, whichever the language): such a
 * frame carries ST_PYFRAME_RUBY, its code is the rb_iseq_t address, instr
 * the word index of its current instruction in the iseq, and its code
 * record says ST_CODE_CRUBY. Native rb_vm_exec frames run them as
 * _PyEval_EvalFrameDefault frames run Python's, with ST_PYFRAME_ENTRY on
 * the frame each VM entry began with (VM_FRAME_FLAG_FINISH). A C method's
 * frame (VM_FRAME_MAGIC_CFUNC, `sleep`) also carries ST_PYFRAME_CFUNC: its
 * code is the method's ID (original_id), its code record has the ID's name
 * and no file, and instr is UINT32_MAX; as in Ruby's backtraces, it is at
 * the file and line of the Ruby frame that called it. Ruby's own outermost
 * frame (the VM's top frame) is left out, as its backtraces leave it out.
 * Added within version 1: a dump without Ruby frames is unchanged, and the
 * flags and field were 0 before.
 */
#define ST_MAX_PYFRAMES 64u

enum st_python_walk {
    ST_PY_NONE = 0,                /* not a Python thread, or no interpreter seen */
    ST_PY_OK = 1,                  /* complete chain */
    ST_PY_TRUNCATED = 2,           /* stopped at ST_MAX_PYFRAMES */
    ST_PY_IMPLAUSIBLE = 3,         /* stopped on memory that did not look right */
    ST_PY_UNSUPPORTED = 4,         /* an interpreter version we do not know */
};

enum st_pyframe_flags {
    ST_PYFRAME_ENTRY = 1u << 0,    /* first frame of an eval-loop invocation */
    ST_PYFRAME_RUBY = 1u << 1,     /* a CRuby frame (see below), not a CPython one */
    ST_PYFRAME_CFUNC = 1u << 2,    /* with RUBY: a C method's frame (see below) */
};

struct st_pyframe {
    uint64_t code;                 /* PyCodeObject address: see ST_REC_PYCODE */
    uint32_t instr;                /* code unit index of the current instruction,
                                      UINT32_MAX when unknown */
    uint32_t flags;                /* st_pyframe_flags */
};

/* A loop iteration whose busy time reached the threshold. */
struct st_rec_stall {
    struct st_record hdr;
    uint32_t tid;
    uint16_t call;                 /* st_call that consumed most of it, or NONE */
    uint16_t reserved;
    uint64_t iter_seq;             /* matches st_rec_sample.iter_seq */
    uint64_t start_ns;             /* return of the previous loop wait */
    uint64_t busy_ns;              /* the stall's duration */
    uint64_t call_ns;              /* time inside `call` (tick clock) */
    uint64_t calls_ns;             /* time inside all wrapped calls of the iteration */
    struct st_stack stack;         /* at `call`; empty if call is NONE */
};

/* One kind of wrapped call in a stalled iteration (an iteration serving
 * several requests may block in several calls of one kind, or in several
 * kinds); written before its ST_REC_STALL, at most ST_STALL_CALLS of them. */
#define ST_STALL_CALLS 3u
struct st_rec_stall_call {
    struct st_record hdr;
    uint32_t tid;
    uint16_t call;
    uint16_t count;                /* calls of this kind that reached the slow bar */
    uint64_t iter_seq;             /* the stall's */
    uint64_t total_ns, max_ns;
    struct st_stack stack;         /* at the longest of them */
};

/* What the stalled thread did with the CPU over a window that covers the
 * stall (from the watchdog's last reading before it began to its end),
 * from the kernel's schedstat: on CPU, and runnable but not running. */
struct st_rec_stall_cpu {
    struct st_record hdr;
    uint32_t tid;
    uint32_t reserved;
    uint64_t iter_seq;
    uint64_t window_ns;            /* >= the stall's busy_ns */
    uint64_t cpu_ns, runq_ns;
};

/* A stack sampled by signal while an iteration ran past the threshold. */
struct st_rec_sample {
    struct st_record hdr;
    uint32_t tid;
    uint32_t reserved;
    uint64_t iter_seq;
    uint64_t at_ns;                /* when the sample was taken */
    struct st_stack stack;
};

/* A wrapped call of at least the threshold on a thread outside any loop
 * iteration (pool workers, plain threads). */
struct st_rec_slow_call {
    struct st_record hdr;
    uint32_t tid;
    uint16_t call;
    uint16_t reserved;
    uint64_t start_ns, duration_ns;
    uint64_t object;               /* sync object address for waits, else fd or 0 */
    struct st_stack stack;
};

/* A thread (re)named itself; the thread table keeps only the last name. */
struct st_rec_thread_name {
    struct st_record hdr;
    uint32_t tid;
    uint32_t reserved;
    uint64_t at_ns;
    char name[ST_NAME_MAX];
};

/* A blocking wait on a sync object of at least the threshold: a contended
 * lock, or a run of timed waits on one contended object (CPython's GIL
 * waits in 5 ms timed condition waits; the run is one record). */
struct st_rec_lock_wait {
    struct st_record hdr;
    uint32_t tid;
    uint16_t call;                 /* st_call of the wait */
    uint16_t kind;                 /* st_object_kind */
    uint64_t object;               /* its address */
    uint64_t start_ns, duration_ns;
    uint32_t retries;              /* timed waits in the run, 1 for a single wait */
    uint32_t reserved;
    struct st_stack stack;
};

/* Who held a lock a wait of at least the threshold was for: the owner
 * glibc's mutex named when the wait began (its __owner tid; an rwlock's
 * writer: __cur_writer; or readers, only counted), written when
 * the wait ended. The wait's end is close to the holder's release, so
 * held_ns (from the wait's start to its end) is how long it kept the lock
 * after the wait began. Its stack, when it could be taken, is an
 * ST_REC_HOLDER_SAMPLE with the same waiter, object and wait_start_ns. */
struct st_rec_lock_holder {
    struct st_record hdr;
    uint32_t tid;                  /* the waiter */
    uint32_t holder_tid;
    uint16_t call;                 /* st_call of the wait */
    uint16_t kind;                 /* st_object_kind */
    uint32_t readers;              /* holder_tid 0: the readers that held the
                                      rwlock when the wait began (and still did
                                      a threshold later); they leave no tid */
    uint64_t object;
    uint64_t wait_start_ns;
    uint64_t held_ns;
};

/* The holder's stack, sampled by signal in the holder while the wait had
 * lasted the threshold and it still owned the lock. */
struct st_rec_holder_sample {
    struct st_record hdr;
    uint32_t holder_tid;
    uint32_t waiter_tid;
    uint64_t object;
    uint64_t wait_start_ns;
    uint64_t at_ns;
    struct st_stack stack;
};

/* A span during which every live member of a pool was busy. */
struct st_rec_saturation {
    struct st_record hdr;
    uint64_t object;               /* the pool's work queue object */
    uint64_t start_ns, duration_ns;
    uint32_t members;              /* live members during the span */
    uint32_t retroactive;          /* 1: dated back to the first member's start,
                                      before the pool was first seen idle */
};

/* A wake of a pool's work queue (condition signal or broadcast, semaphore
 * post by a non-holder) that no idle worker was left to take: more wakes
 * pending than idle members, or none idle at all. The task it announced
 * waits in the queue: the waker's stack says who fed the saturated pool.
 * At most ST_FEED_STACKS per pool between two drains carry a stack; the
 * others are only counted (st_rec_pool_drain.feeds). */
#define ST_FEED_STACKS 16u

/* A pool that signals only idle workers (libuv's checks its own idle count
 * first) never shows a task that queues: the wake that took its last idle
 * worker is recorded too, at most once a second per pool of two workers or
 * more, and counts as a feed only if a saturated span began right after it
 * (the analyzer decides; a healthy pool names no one). */
enum st_feed_flags {
    ST_FEED_LAST_IDLE = 1u << 0,
};

struct st_rec_pool_feed {
    struct st_record hdr;
    uint32_t tid;                  /* the submitter */
    uint16_t call;                 /* st_call of the wake */
    uint16_t flags;                /* st_feed_flags */
    uint64_t object;               /* the pool's work queue */
    uint64_t at_ns;
    struct st_stack stack;
};

/* A member of a fed pool blocked idle on its queue again: the queue had
 * emptied, so every task fed before at_ns had been picked up by then (an
 * upper bound of their queue wait, the only one visible where a worker
 * takes its next task without waiting, as libuv's do). Written only after
 * feeds. */
struct st_rec_pool_drain {
    struct st_record hdr;
    uint64_t object;
    uint64_t at_ns;
    uint32_t feeds;                /* feeds since the previous drain, with a stack or not */
    uint32_t reserved;
};

/* A CPython code object, written once per address before the first stack
 * that names it. The line table is CPython's co_linetable (the PEP 657
 * location table of 3.11-3.13), so lines are computed offline. */
struct st_rec_pycode {
    struct st_record hdr;
    uint64_t code;                 /* its address */
    uint32_t firstlineno;
    uint16_t py_version;           /* 0x030b for 3.11, ... */
    uint16_t qualname_len;         /* bytes, no terminator */
    uint16_t filename_len;
    uint16_t linetable_len;        /* 0 when it was too long to keep */
    uint16_t language;             /* st_code_language; 0 in dumps before CRuby */
    uint16_t reserved;
    /* char qualname[qualname_len], filename[filename_len],
       uint8_t linetable[linetable_len] follow */
};

/* Whose code a code record describes. For ST_CODE_CRUBY, py_version is
 * Ruby's (0x0301 for 3.1), qualname the iseq's label ("load_report",
 * "block in timed"), filename its path, firstlineno the line of its
 * definition, and the line table, when kept, is st_ruby_linetable. */
enum st_code_language {
    ST_CODE_CPYTHON = 0,
    ST_CODE_CRUBY = 1,
};

/* CRuby 3.1's instruction-to-line table, copied as the VM keeps it: the
 * line of entry i holds from instruction word positions[i] on, and the
 * positions are a "succinct index" (iseq.c): rank(x) = how many entries
 * start at or before word x, so the line of word x is lines[rank(x) - 1].
 * The index is imm[] then blocks[]: word x < 54 reads 7-bit field x % 9 of
 * imm[x / 9]; above, block (x - 54) / 512 gives rank + the 9-bit field
 * (j - 1) of small_ranks (0 for j = 0), j = ((x - 54) % 512) / 64, + the
 * ones of bits[j] at or below bit (x - 54) % 64. */
struct st_ruby_linetable {
    uint32_t iseq_size;            /* instruction words */
    uint32_t entries;              /* >= 1; with 1, no index follows */
    /* int32_t lines[entries], then, at the next multiple of 8 bytes,
       uint64_t imm[min(iseq_size + 8, 54) / 9], then
       struct st_ruby_succ_block[(iseq_size - 54 + 511) / 512 when >= 54] */
};

struct st_ruby_succ_block {
    uint32_t rank;
    uint32_t pad;
    uint64_t small_ranks;          /* 9 bits per 64-bit part 1..7 */
    uint64_t bits[8];
};

/* A JIT symbol from the process's perf map (/tmp/perf-PID.map, written by
 * node --perf-basic-prof or python -X perf), copied at exit for the
 * addresses recorded stacks need, so the dump is readable without /tmp.
 * Copied in the map's order. With ST_JITSYM_MAP_END, a uint64_t follows the
 * name at the next multiple of 8 bytes of the record: the byte offset in
 * the map just past the entry's line, compared with ST_STACK_JIT_MARK. */
struct st_rec_jitsym {
    struct st_record hdr;
    uint64_t start;
    uint32_t size;
    uint16_t name_len;             /* bytes, no terminator */
    uint16_t flags;                /* st_jitsym_flags */
    /* char name[name_len] follows */
};

enum st_jitsym_flags {
    ST_JITSYM_MAP_END = 1u << 0,
};

/* Code of a module mapped a second time from its file, outside the module:
 * V8 maps its embedded builtins again next to the JIT code so that calls to
 * them are short. An address in [start, start + size) runs the module's
 * code at copy_of + (address - start). Written at exit. */
struct st_rec_code_copy {
    struct st_record hdr;
    uint64_t start, size;
    uint64_t copy_of;
};

/* A task whose queue wait reached the threshold, written when it started.
 * The submitter's stack is taken at submission only when the queue looked
 * backed up (a task already pending, or as many running as ever), at most
 * once per queue per few ms; a task submitted without one borrows the last
 * stack its thread took for that queue (ST_TASK_STACK_SHARED), else has none. */
enum st_task_stack {
    ST_TASK_STACK_NONE = 0,
    ST_TASK_STACK_OWN = 1,         /* taken at this task's submission */
    ST_TASK_STACK_SHARED = 2,      /* taken at an earlier submission (stack_at_ns) */
};

struct st_rec_task_wait {
    struct st_record hdr;
    uint32_t queue;                /* slot index in the queue table */
    uint32_t submit_tid, start_tid;
    uint16_t stack_kind;           /* st_task_stack */
    uint16_t reserved;
    uint64_t task_id;              /* as the program gave it: opaque */
    uint64_t submit_ns, start_ns;  /* wait = start_ns - submit_ns */
    uint64_t stack_at_ns;          /* when the stack was taken */
    struct st_stack stack;         /* the submitter's, at stack_at_ns */
};

#endif /* STALLTRACE_FORMAT_H */

/* dump.h - reading a stalltrace dump: validation of untrusted bytes and the
 * decoded view (process, modules, threads, ring events) the analyzer uses. */
#ifndef STALLTRACE_DUMP_H
#define STALLTRACE_DUMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stalltrace/format.h"
#include "pycode.h"

/* A CPython frame as stored (struct st_pyframe), with its code's record. */
struct dump_pyframe {
    uint64_t code;
    uint32_t instr;                /* code unit index, UINT32_MAX when unknown */
    uint32_t flags;                /* st_pyframe_flags */
    const struct py_code *info;    /* NULL: the dump does not describe it */
};

/* A stack as stored: frame 0 is an exact PC, the others return addresses. */
struct dump_stack {
    uint16_t nframes;
    uint8_t unwinder;
    uint8_t truncated;
    const uint64_t *frames;        /* points into the dump's event arena */
    uint16_t npython;              /* Python frames, innermost first */
    uint8_t python;                /* st_python_walk */
    const struct dump_pyframe *pyframes;  /* points into the dump's Python arena */
    uint64_t jit_map_bytes;        /* perf map length when taken (ST_STACK_JIT_MARK);
                                      DUMP_JIT_MAP_UNNOTED when the stack does not say */
};
#define DUMP_JIT_MAP_UNNOTED UINT64_MAX

/* One accepted ring record, decoded. Fields a type does not have are 0. */
struct dump_event {
    uint64_t pos;                  /* absolute ring position (sort order) */
    uint16_t type;                 /* st_record_type */
    uint16_t call;                 /* st_call (may be >= ST_CALL_COUNT if newer) */
    uint32_t tid;
    uint64_t iter_seq;             /* stall, sample */
    uint64_t start_ns;             /* stall, slow call */
    uint64_t duration_ns;          /* stall busy_ns, slow call duration_ns */
    uint64_t call_ns, calls_ns;    /* stall */
    uint64_t at_ns;                /* sample, thread name */
    uint64_t object;               /* slow call, lock wait, saturation */
    uint16_t kind;                 /* lock wait: st_object_kind */
    uint32_t retries;              /* lock wait: timed waits in the run */
    uint32_t members;              /* saturation: live members during the span */
    bool retroactive;              /* saturation: dated back to the first member's start */
    char name[ST_NAME_MAX + 1];    /* thread name */
    /* task wait (tid: the worker that started it; start_ns: its submission,
     * duration_ns: its queue wait; the stack is the submitter's) */
    uint32_t queue;                /* slot index in the queue table */
    uint32_t submit_tid;
    uint16_t stack_kind;           /* st_task_stack */
    uint64_t task_id, stack_at_ns;
    /* stall call (call_ns: the longest one, duration_ns: their total) */
    uint32_t count;
    /* stall cpu (duration_ns: the window) */
    uint64_t cpu_ns, runq_ns;
    /* lock holder, holder sample (tid: the waiter; start_ns: the wait's
     * start; duration_ns: how long the holder kept the lock after it) */
    uint32_t holder_tid;
    uint32_t readers;              /* lock holder, holder_tid 0: an rwlock's readers */
    /* pool feed: st_feed_flags (drain: count is the feeds since the last) */
    uint16_t feed_flags;
    struct dump_stack stack;
};

/* A JIT symbol the recorder copied from the process's perf map, in the
 * map's order. */
struct dump_jitsym {
    uint64_t start, size;
    uint64_t map_end;              /* map offset past its line; 0: not recorded */
    char *name;
};

/* Module code mapped again elsewhere (struct st_rec_code_copy). */
struct dump_code_copy {
    uint64_t start, size, copy_of;
};

struct dump {
    char *path;                    /* as given, for messages */
    struct st_file_header hdr;     /* copy; strings below are terminated */
    char recorder_version[sizeof(((struct st_file_header *)0)->recorder_version) + 1];
    char unwinder[sizeof(((struct st_file_header *)0)->unwinder) + 1];

    struct st_process proc;        /* copy; exe is NUL-terminated */
    int argc;
    char **argv;                   /* argc strings, NULL-terminated array */

    struct st_module *modules;     /* valid slots only, in slot order */
    uint32_t nmodules;
    struct st_thread *threads;     /* claimed slots only (tid != 0) */
    uint32_t *thread_slots;        /* slot index of each of threads[]: the
                                      bit number in an object's bitmaps */
    uint32_t nthreads;

    struct st_object *objects;     /* slots in use (addr != 0), in slot order */
    uint32_t nobjects;
    struct st_queue *queues;       /* valid task queue slots, in slot order */
    uint32_t *queue_slots;         /* slot index of each: what task records name */
    uint32_t nqueues;

    struct dump_event *events;     /* accepted records of known types, by pos */
    size_t nevents;
    uint64_t accepted;             /* records accepted, unknown types included */
    uint64_t dropped;              /* ring_records - accepted, clamped at 0 */
    uint64_t overwritten_bytes;    /* ring bytes before the live window */
    int live;                      /* not marked complete: read as a live dump */
    unsigned owner;                /* uid owning the file (dump_open_path), else 0 */

    uint64_t *arena;               /* stack frames of all events */
    struct dump_pyframe *pyarena;  /* Python frames of all events */
    struct py_codes pycodes;       /* the code objects ST_REC_PYCODE describes */
    struct dump_jitsym *jitsyms;   /* JIT symbols copied from the perf map at exit */
    size_t njitsyms, jitsyms_cap;
    struct dump_code_copy *code_copies;
    size_t ncode_copies, code_copies_cap;
};

/* Readers copy at most this much of one dump unless STALLTRACE_READ_MAX_MB
 * says otherwise: the recorder's largest ring (4096 MB) and its tables. */
#define DUMP_READ_MAX_MB_DEFAULT 4160u
uint64_t dump_read_limit(void);

/* Open and validate PATH: a regular file only (a FIFO, device or symbolic
 * link is refused without blocking), its header checked before anything
 * is allocated, at most its header's file size and dump_read_limit() copied,
 * once. On failure returns NULL and sets *err to one line
 * ("PATH: not a stalltrace dump (bad magic)"), to be freed by the caller;
 * when open() itself failed, errno is its error (EMFILE: no fd left). */
struct dump *dump_open_path(const char *path, char **err);

/* The same from bytes in memory (tests, fuzzing); NAME is used in messages. */
struct dump *dump_open_mem(const void *buf, size_t len, const char *name, char **err);

void dump_free(struct dump *d);

/* Read only the header of PATH to learn when its recording started; 0 on
 * success. Used by `run` to find the dumps its command wrote. */
int dump_peek_start(const char *path, uint64_t *start_real_ns, int32_t *pid);

/* Name of a wrapped call id, or NULL for ST_CALL_NONE and unknown ids. */
const char *dump_call_name(unsigned call);

#endif /* STALLTRACE_DUMP_H */

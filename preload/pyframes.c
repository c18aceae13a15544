/* pyframes.c - CPython's frame chain, walked from inside the process.
 * Layouts of 3.11 and 3.12 are fixed tables checked against their DWARF;
 * 3.13 publishes its own (_Py_DebugOffsets). Anything else: we step aside.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

#include "pyframes.h"
#include "recorder.h"

struct py_layout {
    uint16_t version;                      /* 0x030b, 0x030c, 0x030d */
    uint32_t runtime_interpreters_head;
    uint32_t interp_next, interp_threads_head;
    uint32_t tstate_next, tstate_thread_id;
    uint32_t tstate_cframe;                /* 3.11/3.12: tstate->cframe->current_frame */
    uint32_t cframe_current_frame;
    uint32_t tstate_current_frame;         /* 3.13: tstate->current_frame */
    uint32_t frame_code, frame_previous, frame_instr, frame_owner;
    int32_t frame_is_entry;                /* 3.11 only; -1 elsewhere */
    uint32_t code_filename, code_qualname, code_firstlineno, code_linetable, code_adaptive;
    uint32_t unicode_state, unicode_length, ascii_size;
    uint32_t bytes_size, bytes_data;
};

/* Read with gdb's ptype/o from the pyenv builds of 3.11.7 and 3.12.1. */
static const struct py_layout layout_311 = {
    0x030b, 40, 0, 0x10, 0x08, 0x98, 0x38, 0x08, 0,
    0x20, 0x30, 0x38, 0x45, 0x44,
    0x70, 0x80, 0x48, 0x88, 0xb8,
    32, 16, 48, 16, 32,
};
static const struct py_layout layout_312 = {
    0x030c, 40, 0, 0x48, 0x08, 0x88, 0x38, 0x00, 0,
    0x00, 0x08, 0x38, 0x46, -1,
    0x70, 0x80, 0x44, 0x88, 0xc0,
    32, 16, 40, 16, 32,
};

#define FRAME_OWNED_BY_CSTACK 3    /* 3.12+: a shim frame between eval loops */
#define FRAME_READ 0x50            /* covers every frame field we read */
#define CODE_CACHE 4096u

static struct {
    int state;                     /* 0 unknown, 1 ready, -1 not CPython, -2 unsupported */
    int tries;
    struct py_layout l;
    uintptr_t runtime, code_type;
} py;

static uint64_t seen_codes[CODE_CACHE];
static uint32_t seen_lap[CODE_CACHE];   /* ring lap its record was written in */
static ST_TLS uintptr_t cached_tstate;

/* Within a wrapped call a thread reads its own frames, which only it
 * changes and which hold references to their code objects: plain loads are
 * safe there and save ~40 system calls a stack. From a signal handler, or
 * on other threads' states, every read goes through process_vm_readv. */
static ST_TLS int reading_own_frames;

void st_frames_own(int own_context)
{
    reading_own_frames = own_context;
}

int st_frames_owning(void)
{
    return reading_own_frames;
}

int st_frames_peek(void *dst, uintptr_t src, size_t n)
{
    if (reading_own_frames && src >= 4096) {
        memcpy(dst, (const void *)src, n);
        return 1;
    }
    return st_safe_read(dst, src, n);
}

#define peek st_frames_peek

static uintptr_t peek_ptr(uintptr_t src)
{
    uintptr_t v = 0;
    return peek(&v, src, sizeof v) ? v : 0;
}

static int layout_from_debug_offsets(uintptr_t runtime)
{
    uint64_t d[80];
    if (!peek(d, runtime, sizeof d) || memcmp(d, "xdebugpy", 8) != 0 || d[2] != 0)
        return 0;       /* free-threaded builds have another layout */
    /* Indexes into _Py_DebugOffsets as laid out in 3.13's pycore_runtime.h. */
    struct py_layout *l = &py.l;
    l->version = 0x030d;
    l->runtime_interpreters_head = (uint32_t)d[5];
    l->interp_next = (uint32_t)d[8];
    l->interp_threads_head = (uint32_t)d[9];
    l->tstate_next = (uint32_t)d[21];
    l->tstate_current_frame = (uint32_t)d[23];
    l->tstate_thread_id = (uint32_t)d[24];
    l->frame_previous = (uint32_t)d[29];
    l->frame_code = (uint32_t)d[30];
    l->frame_instr = (uint32_t)d[31];
    l->frame_owner = (uint32_t)d[33];
    l->frame_is_entry = -1;
    l->code_filename = (uint32_t)d[35];
    l->code_qualname = (uint32_t)d[37];
    l->code_linetable = (uint32_t)d[38];
    l->code_firstlineno = (uint32_t)d[39];
    l->code_adaptive = (uint32_t)d[43];
    l->bytes_size = (uint32_t)d[65];
    l->bytes_data = (uint32_t)d[66];
    l->unicode_state = (uint32_t)d[68];
    l->unicode_length = (uint32_t)d[69];
    l->ascii_size = (uint32_t)d[70];
    if (l->frame_code + 8 > FRAME_READ || l->frame_previous + 8 > FRAME_READ ||
        l->frame_instr + 8 > FRAME_READ || l->frame_owner >= FRAME_READ)
        return 0;
    return 1;
}

void st_py_init(void)
{
    if (py.state != 0 || py.tries++ > 16)
        return;
    const unsigned long *version = dlsym(RTLD_DEFAULT, "Py_Version");
    uintptr_t runtime = (uintptr_t)dlsym(RTLD_DEFAULT, "_PyRuntime");
    uintptr_t code_type = (uintptr_t)dlsym(RTLD_DEFAULT, "PyCode_Type");
    if (runtime == 0 || code_type == 0)
        return;        /* not (yet) a Python process: look again later */
    unsigned minor = version ? (unsigned)(*version >> 16) & 0xff : 0;
    unsigned major = version ? (unsigned)(*version >> 24) : 0;
    int known = 0;
    if (major == 3 && minor == 11)
        py.l = layout_311, known = 1;
    else if (major == 3 && minor == 12)
        py.l = layout_312, known = 1;
    else if (major == 3 && minor == 13)
        known = layout_from_debug_offsets(runtime);
    py.runtime = runtime;
    py.code_type = code_type;
    uintptr_t probe;
    if (known && !peek(&probe, runtime, sizeof probe))
        known = 0;     /* process_vm_readv refused: no safe way to read */
    __atomic_store_n(&py.state, known ? 1 : -2, __ATOMIC_RELEASE);
}

uint32_t st_py_native_tid_offset(void)
{
    /* 3.11-3.13 keep native_thread_id right after thread_id. */
    return __atomic_load_n(&py.state, __ATOMIC_ACQUIRE) == 1 ? py.l.tstate_thread_id + 8 : 0;
}

void st_py_forget(void)
{
    memset(seen_codes, 0, sizeof seen_codes);
    memset(seen_lap, 0, sizeof seen_lap);
}

/* This thread's PyThreadState: the one whose thread_id is pthread_self(). */
static uintptr_t find_tstate(void)
{
    uint64_t self = (uint64_t)pthread_self();
    const struct py_layout *l = &py.l;
    if (cached_tstate && peek_ptr(cached_tstate + l->tstate_thread_id) == self)
        return cached_tstate;
    uintptr_t interp = peek_ptr(py.runtime + l->runtime_interpreters_head);
    for (int i = 0; interp && i < 16; i++, interp = peek_ptr(interp + l->interp_next)) {
        uintptr_t ts = peek_ptr(interp + l->interp_threads_head);
        for (int j = 0; ts && j < 4096; j++, ts = peek_ptr(ts + l->tstate_next))
            if (peek_ptr(ts + l->tstate_thread_id) == self)
                return cached_tstate = ts;
    }
    return 0;
}

static uint32_t peek_ascii(uintptr_t str, char *out, uint32_t cap)
{
    const struct py_layout *l = &py.l;
    uint32_t state = 0;
    uint64_t length = 0;
    if (!peek(&state, str + l->unicode_state, sizeof state) ||
        !peek(&length, str + l->unicode_length, sizeof length))
        return 0;
    int compact = (state >> 5) & 1, ascii = (state >> 6) & 1;
    if (!compact || !ascii || length == 0)
        return 0;
    uint32_t n = length < cap ? (uint32_t)length : cap;
    return peek(out, str + l->ascii_size, n) ? n : 0;
}

/* Write the code object's names and line table once per address, and
 * again once the ring has come round: the old record may be overwritten
 * while stacks that name the code are still in the ring. */
int st_code_first_in_lap(uintptr_t code)
{
    uint64_t h = (code >> 4) * 0x9e3779b97f4a7c15ULL;
    uint32_t lap = (uint32_t)(__atomic_load_n(st_rec.ring.head, __ATOMIC_RELAXED) /
                              (st_rec.ring.size / 2));
    for (unsigned i = 0; i < 16; i++) {
        unsigned at = (unsigned)((h + i) & (CODE_CACHE - 1));
        uint64_t seen = __atomic_load_n(&seen_codes[at], __ATOMIC_RELAXED);
        if (seen == code) {
            if (__atomic_load_n(&seen_lap[at], __ATOMIC_RELAXED) == lap)
                return 0;
            __atomic_store_n(&seen_lap[at], lap, __ATOMIC_RELAXED);
            return 1;
        }
        if (seen == 0 && __atomic_compare_exchange_n(&seen_codes[at], &seen, code, 0,
                                                     __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
            __atomic_store_n(&seen_lap[at], lap, __ATOMIC_RELAXED);
            return 1;
        }
    }
    return 1;                      /* cache full here: writing again is only wasteful */
}

static void note_code(uintptr_t code)
{
    if (!st_code_first_in_lap(code))
        return;
    const struct py_layout *l = &py.l;
    union {
        struct st_rec_pycode rec;
        uint8_t bytes[sizeof(struct st_rec_pycode) + 256 + 512 + 2048];
    } buf;
    struct st_rec_pycode *r = &buf.rec;
    memset(r, 0, sizeof *r);
    char *data = (char *)(r + 1);
    int32_t firstlineno = 0;
    peek(&firstlineno, code + l->code_firstlineno, sizeof firstlineno);
    r->code = code;
    r->firstlineno = firstlineno > 0 ? (uint32_t)firstlineno : 0;
    r->py_version = l->version;
    r->qualname_len = (uint16_t)peek_ascii(peek_ptr(code + l->code_qualname), data, 256);
    r->filename_len = (uint16_t)peek_ascii(peek_ptr(code + l->code_filename), data + r->qualname_len, 512);
    uintptr_t table = peek_ptr(code + l->code_linetable);
    uint64_t table_len = 0;
    uint8_t *lt = (uint8_t *)data + r->qualname_len + r->filename_len;
    if (table && peek(&table_len, table + l->bytes_size, sizeof table_len) && table_len <= 2048 &&
        peek(lt, table + l->bytes_data, table_len))
        r->linetable_len = (uint16_t)table_len;
    st_ring_put(&st_rec.ring, ST_REC_PYCODE, r,
                sizeof *r + r->qualname_len + r->filename_len + r->linetable_len);
}

unsigned st_py_walk(struct st_pyframe *out, unsigned max, uint8_t *status, int own_context)
{
    *status = ST_PY_NONE;
    int state = __atomic_load_n(&py.state, __ATOMIC_ACQUIRE);
    if (state != 1) {
        if (state == -2)
            *status = ST_PY_UNSUPPORTED;
        return 0;
    }
    const struct py_layout *l = &py.l;
    uintptr_t tstate = find_tstate();
    if (tstate == 0)
        return 0;
    uintptr_t frame = l->version >= 0x030d
                          ? peek_ptr(tstate + l->tstate_current_frame)
                          : peek_ptr(peek_ptr(tstate + l->tstate_cframe) + l->cframe_current_frame);
    st_frames_own(own_context);
    unsigned n = 0;
    *status = ST_PY_OK;
    for (unsigned steps = 0; frame != 0; steps++) {
        uint8_t f[FRAME_READ];
        if (steps > 4 * ST_MAX_PYFRAMES || !peek(f, frame, sizeof f)) {
            *status = ST_PY_IMPLAUSIBLE;
            break;
        }
        uintptr_t code, previous, instr;
        memcpy(&code, f + l->frame_code, sizeof code);
        memcpy(&previous, f + l->frame_previous, sizeof previous);
        memcpy(&instr, f + l->frame_instr, sizeof instr);
        uint8_t owner = f[l->frame_owner];
        frame = previous;
        if (owner == FRAME_OWNED_BY_CSTACK && l->version >= 0x030c) {
            if (n > 0)
                out[n - 1].flags |= ST_PYFRAME_ENTRY;
            continue;
        }
        if (peek_ptr(code + 8) != py.code_type) {     /* ob_type: is it a code object? */
            *status = ST_PY_IMPLAUSIBLE;
            break;
        }
        if (n == max) {
            *status = ST_PY_TRUNCATED;
            break;
        }
        uintptr_t first = code + l->code_adaptive;
        uint64_t index = instr >= first ? (instr - first) / 2 : UINT32_MAX;
        out[n].code = code;
        out[n].instr = index < UINT32_MAX ? (uint32_t)index : UINT32_MAX;
        out[n].flags = l->frame_is_entry >= 0 && f[l->frame_is_entry] ? ST_PYFRAME_ENTRY : 0;
        n++;
        note_code(code);
    }
    st_frames_own(0);
    return n;
}

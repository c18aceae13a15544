/* stack.c - stacks with libunwind: after a slow call returned (cheap and
 * safe, JFR's moment), or from the sampling signal's interrupted context.
 */
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "recorder.h"

static int in_self(uintptr_t ip) { return ip >= st_rec.self_start && ip < st_rec.self_end; }

static unsigned walk(unw_cursor_t *cursor, uintptr_t *frames, unsigned max, unsigned out,
                     uint8_t *truncated);
static int in_module(uintptr_t ip);

/* Frame 0 becomes the real libc function the wrapper called, so the stack
 * reads "clock_nanosleep <- pysleep <- ..." as if we were not there.
 * A cursor walk, not unw_backtrace: the latter keeps a 256 KiB trace cache
 * per thread, more than the whole budget of a thread. */
static unsigned native_here(uintptr_t *frames, unsigned max, void *real_fn, uint8_t *truncated)
{
    unw_context_t ctx;
    unw_cursor_t cursor;
    unsigned out = 0;
    *truncated = 0;
    if (unw_getcontext(&ctx) < 0 || unw_init_local(&cursor, &ctx) < 0)
        return 0;
    for (;;) {                     /* skip the recorder's own frames */
        unw_word_t ip;
        if (unw_get_reg(&cursor, UNW_REG_IP, &ip) < 0 || !in_self((uintptr_t)ip))
            break;
        if (unw_step(&cursor) <= 0)
            return 0;
    }
    if (real_fn != NULL && out < max)
        frames[out++] = (uintptr_t)real_fn;
    out = walk(&cursor, frames, max, out, truncated);
    if (!st_modules_cover(frames, out))
        st_modules_refresh();      /* something was dlopen'ed since */
    return out;
}

/* Safe reads of our own memory: a bad pointer gives an error, not a fault. */
int st_safe_read(void *dst, uintptr_t src, size_t n)
{
    if (src < 4096)
        return 0;
    struct iovec local = {dst, n}, remote = {(void *)src, n};
    return syscall(SYS_process_vm_readv, st_rec.proc_pid, &local, 1, &remote, 1, 0) == (ssize_t)n;
}

static int in_module(uintptr_t ip) { return st_modules_cover(&ip, 1); }

/* JIT code (V8's) has no unwind tables but keeps frame pointers: hop along
 * the rbp chain until a return address lands in a module again, then let
 * libunwind go on from there with a context made of that frame. */
static int hop_frame_pointers(unw_cursor_t *cursor, uintptr_t *frames, unsigned max,
                              unsigned *out)
{
    unw_word_t rbp;
    if (unw_get_reg(cursor, UNW_X86_64_RBP, &rbp) < 0)
        return 0;
    for (unsigned hops = 0; hops < 64 && *out < max; hops++) {
        uintptr_t saved[2];        /* caller's rbp, return address */
        if ((rbp & 7) || !st_safe_read(saved, rbp, sizeof saved) || saved[1] < 4096 ||
            saved[0] <= rbp || saved[0] - rbp > (16u << 20))
            return 0;
        frames[(*out)++] = saved[1];
        if (in_module(saved[1])) {
            unw_context_t ctx;
            if (unw_getcontext(&ctx) < 0)
                return 0;
            ctx.uc_mcontext.gregs[REG_RIP] = (greg_t)saved[1];
            ctx.uc_mcontext.gregs[REG_RSP] = (greg_t)(rbp + 16);
            ctx.uc_mcontext.gregs[REG_RBP] = (greg_t)saved[0];
            return unw_init_local2(cursor, &ctx, 0) == 0 && unw_step(cursor) > 0;
        }
        rbp = saved[0];
    }
    return 0;
}

/* Frames from the cursor's current frame on; through JIT code if needed. */
static unsigned walk(unw_cursor_t *cursor, uintptr_t *frames, unsigned max, unsigned out,
                     uint8_t *truncated)
{
    for (;;) {
        unw_word_t ip;
        if (unw_get_reg(cursor, UNW_REG_IP, &ip) < 0 || ip == 0)
            break;
        if (out == max) {
            *truncated = 1;
            break;
        }
        frames[out++] = (uintptr_t)ip;
        if (unw_step(cursor) > 0)
            continue;
        if (in_module(ip) || !hop_frame_pointers(cursor, frames, max, &out))
            break;
    }
    return out;
}

/* Does the code before r end in an indirect call: call reg, call
 * [reg+disp8] or call [reg+disp32] (ff /2; a REX prefix before it changes
 * nothing here)? */
static int after_indirect_call(uintptr_t r)
{
    uint8_t b[6];                                  /* b[6 - k]: k bytes before r */
    if (!st_safe_read(b, r - sizeof b, sizeof b))
        return 0;
    return (b[4] == 0xff && (b[5] & 0xf8) == 0xd0) ||
           (b[3] == 0xff && (b[4] & 0xf8) == 0x50 && b[4] != 0x54) ||
           (b[0] == 0xff && (b[1] & 0xf8) == 0x90 && b[1] != 0x94);
}

/* V8 builds no frame for leaf code (a builtin such as NumberToString), nor
 * has a function built its own yet at its first instruction: the return
 * address into the caller is then left between the stack pointer and the
 * frame the rbp chain starts at, which skips that caller. A slot is taken
 * only when it returns from a direct call (e8 rel32) to code at most 64 KiB
 * before the address it returns from (the interrupted PC, then each caller
 * so found) or into V8's copy of its builtins (a builtin that tail-called
 * the interrupted code or the builtin found before); the top slot (the one
 * above a just-pushed rbp) also after an indirect call (JS calls JS so). A
 * JS function that called a builtin has a frame of its own, so past a
 * return into one only a call of that very function is taken: further
 * calls of builtins are stale slots of its earlier calls.
 * Returns how many were put in ret. */
static unsigned frameless_callers(const ucontext_t *uc, uintptr_t *ret, unsigned max)
{
    uintptr_t inner = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    uintptr_t sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
    uintptr_t bp = (uintptr_t)uc->uc_mcontext.gregs[REG_RBP];
    uintptr_t slots[128];
    unsigned n = 0, nslots = 128;
    if (bp > sp && (bp - sp) / 8 < nslots)
        nslots = (unsigned)((bp - sp) / 8);
    if ((sp & 7) || !st_safe_read(slots, sp, nslots * sizeof slots[0]))
        return 0;
    for (unsigned i = 0; i < nslots && n < max; i++) {
        uintptr_t r = slots[i];
        uint8_t call[5];
        int32_t rel;
        if (r < 4096 || in_module(r) || !st_safe_read(call, r - 5, sizeof call))
            continue;
        /* At a function's second instruction its caller's rbp was just pushed. */
        int top = i == 0 || (i == 1 && slots[0] == bp);
        if (top && call[0] != 0xe8 && after_indirect_call(r)) {
            ret[n++] = inner = r;
            continue;
        }
        if (call[0] != 0xe8)
            continue;
        memcpy(&rel, call + 1, sizeof rel);
        uintptr_t target = r + (uintptr_t)(intptr_t)rel;
        int called_inner = target <= inner && inner - target < (64u << 10);
        if (!called_inner && !(st_code_copies_cover(target) && (n == 0 || st_code_copies_cover(inner))))
            continue;
        ret[n++] = inner = r;
    }
    return n;
}

static unsigned native_signal(uintptr_t *frames, unsigned max, void *ucontext, uint8_t *truncated)
{
    unw_cursor_t cursor;
    uintptr_t callers[8];
    *truncated = 0;
    if (unw_init_local2(&cursor, (unw_context_t *)ucontext, UNW_INIT_SIGNAL_FRAME) < 0)
        return 0;
    unsigned out = walk(&cursor, frames, max, 0, truncated);
    /* Interrupted in JIT code or V8's copy of its builtins, or in a builtin
     * of the binary called from there. */
    int jit = out >= 1 && (!in_module(frames[0]) || (out >= 2 && !in_module(frames[1])));
    unsigned k = jit ? frameless_callers(ucontext, callers, 8) : 0;
    while (k > 0 && out >= 2 && frames[1] == callers[k - 1])
        k--;                       /* the rbp chain has the outermost already */
    if (k > 0 && max > k) {
        if (out + k > max) {
            *truncated = 1;
            out = max - k;
        }
        memmove(frames + 1 + k, frames + 1, (out - 1) * sizeof *frames);
        memcpy(frames + 1, callers, k * sizeof *frames);
        out += k;
    }
    if (!st_modules_cover(frames, out))
        st_rec.modules_stale = 1;  /* the watchdog refreshes: not safe here */
    return out;
}

/* Captures under way: detach closes libunwind's pipe only once none is, and
 * none starts after the recorder stopped (a wrapper whose call began before
 * detach ends after it). Without this, a worker returning from its wait
 * after detach walked its stack through fd numbers the program had reused. */
static int capturing;

static int capture_begin(struct st_captured *c)
{
    __atomic_add_fetch(&capturing, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&st_rec.state, __ATOMIC_SEQ_CST) != ST_OFF)
        return 1;
    __atomic_sub_fetch(&capturing, 1, __ATOMIC_SEQ_CST);
    c->nframes = c->npython = 0;
    c->truncated = c->python = c->jit_marked = 0;
    return 0;
}

static void capture_end(void) { __atomic_sub_fetch(&capturing, 1, __ATOMIC_SEQ_CST); }

int st_stack_quiesce(void)
{
    for (int i = 0; i < 1000; i++) {
        if (__atomic_load_n(&capturing, __ATOMIC_SEQ_CST) == 0)
            return 0;
        struct timespec t = {0, 1000000};
        syscall(SYS_nanosleep, &t, NULL);
    }
    return -1;
}

/* libunwind takes locks of its own, through our wrappers: a wait on one
 * must not be timed and captured, or the capture re-enters libunwind while
 * its lock is held. Whoever calls, the recorder is busy meanwhile. */
void st_capture_here(struct st_captured *c, void *real_fn)
{
    if (!capture_begin(c))
        return;
    int saved_errno = st_recorder_enter(&st_tls);
    c->nframes = (uint16_t)native_here(c->frames, ST_MAX_FRAMES, real_fn, &c->truncated);
    st_jitmap_mark(c);
    st_py_init();
    st_rb_init();
    c->npython = (uint16_t)st_py_walk(c->py, ST_MAX_PYFRAMES, &c->python, 1);
    if (c->python == ST_PY_NONE)
        c->npython = (uint16_t)st_rb_walk(c->py, ST_MAX_PYFRAMES, &c->python, 1);
    st_tls.unwind_warm = 1;
    st_recorder_leave(&st_tls, saved_errno);
    capture_end();
}

void st_capture_signal(struct st_captured *c, void *ucontext)
{
    if (!capture_begin(c))
        return;
    c->nframes = (uint16_t)native_signal(c->frames, ST_MAX_FRAMES, ucontext, &c->truncated);
    st_jitmap_mark(c);
    c->npython = (uint16_t)st_py_walk(c->py, ST_MAX_PYFRAMES, &c->python, 0);
    if (c->python == ST_PY_NONE)
        c->npython = (uint16_t)st_rb_walk(c->py, ST_MAX_PYFRAMES, &c->python, 0);
    capture_end();
}

/* libunwind builds its per-thread cache on first use: do that outside a
 * signal handler, once per thread that may be sampled. */
void st_stack_warm_up(void)
{
    static int policy_set;
    if (!__atomic_exchange_n(&policy_set, 1, __ATOMIC_RELAXED))
        unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
    struct st_captured c;
    st_capture_here(&c, NULL);
}

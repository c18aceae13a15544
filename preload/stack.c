/* stack.c - stacks with libunwind: after a slow call returned (cheap and
 * safe, JFR's moment), or from the sampling signal's interrupted context.
 */
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#include <ucontext.h>

#include "recorder.h"

static int in_self(uintptr_t ip) { return ip >= st_rec.self_start && ip < st_rec.self_end; }

/* Frame 0 becomes the real libc function the wrapper called, so the stack
 * reads "clock_nanosleep <- pysleep <- ..." as if we were not there. */
static unsigned native_here(uintptr_t *frames, unsigned max, void *real_fn, uint8_t *truncated)
{
    void *raw[ST_MAX_FRAMES + 16];
    int n = unw_backtrace(raw, (int)(sizeof raw / sizeof raw[0]));
    int i = 0;
    while (i < n && in_self((uintptr_t)raw[i]))
        i++;
    unsigned out = 0;
    if (real_fn != NULL && out < max)
        frames[out++] = (uintptr_t)real_fn;
    for (; i < n && out < max; i++)
        frames[out++] = (uintptr_t)raw[i];
    *truncated = i < n || n == (int)(sizeof raw / sizeof raw[0]);
    if (!st_modules_cover(frames, out))
        st_modules_refresh();      /* something was dlopen'ed since */
    return out;
}

static unsigned native_signal(uintptr_t *frames, unsigned max, void *ucontext, uint8_t *truncated)
{
    unw_cursor_t cursor;
    unsigned out = 0;
    *truncated = 0;
    if (unw_init_local2(&cursor, (unw_context_t *)ucontext, UNW_INIT_SIGNAL_FRAME) < 0)
        return 0;
    do {
        unw_word_t ip;
        if (unw_get_reg(&cursor, UNW_REG_IP, &ip) < 0 || ip == 0)
            break;
        if (out == max) {
            *truncated = 1;
            break;
        }
        frames[out++] = (uintptr_t)ip;
    } while (unw_step(&cursor) > 0);
    if (!st_modules_cover(frames, out))
        st_rec.modules_stale = 1;  /* the watchdog refreshes: not safe here */
    return out;
}

void st_capture_here(struct st_captured *c, void *real_fn)
{
    c->nframes = (uint16_t)native_here(c->frames, ST_MAX_FRAMES, real_fn, &c->truncated);
    st_py_init();
    c->npython = (uint16_t)st_py_walk(c->py, ST_MAX_PYFRAMES, &c->python);
}

void st_capture_signal(struct st_captured *c, void *ucontext)
{
    c->nframes = (uint16_t)native_signal(c->frames, ST_MAX_FRAMES, ucontext, &c->truncated);
    c->npython = (uint16_t)st_py_walk(c->py, ST_MAX_PYFRAMES, &c->python);
}

/* libunwind builds its per-thread cache on first use: do that outside a
 * signal handler, once per thread that may be sampled. */
void st_stack_warm_up(void)
{
    static int policy_set;
    if (!__atomic_exchange_n(&policy_set, 1, __ATOMIC_RELAXED))
        unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
    void *raw[8];
    unw_backtrace(raw, 8);
    st_py_init();
}

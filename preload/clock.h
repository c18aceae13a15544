/* clock.h - the hot paths' clock: TSC ticks where the TSC is invariant (no
 * memory touched, no call), CLOCK_MONOTONIC nanoseconds elsewhere.
 *
 * Why: on a VM with page-table isolation every system call flushes the TLB,
 * and a clock_gettime right after one costs 25-50 ns to refill it; rdtsc
 * costs ~10 ns wherever it runs. Ticks only ever make durations; absolute
 * times come from a per-thread anchor (a tick count and the precise time
 * read together), refreshed about once a second, so they stay within
 * microseconds of CLOCK_MONOTONIC, which every other record uses.
 */
#ifndef STALLTRACE_CLOCK_H
#define STALLTRACE_CLOCK_H

#include <stdint.h>
#include <time.h>

struct st_clock {
    int tsc;                         /* ticks are TSC cycles, else ns */
    uint64_t ns_per_tick_q32;        /* 32.32 fixed point */
    uint64_t base_ticks, base_ns;    /* read together at start: the calibration baseline */
};

struct st_anchor {
    uint64_t ticks, ns;              /* read together; ns since the recording started */
};

static inline uint64_t st_clock_read_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t st_clock_ticks(const struct st_clock *c)
{
#if defined(__x86_64__)
    if (__builtin_expect(c->tsc, 1))
        return __builtin_ia32_rdtsc();
#else
    (void)c;
#endif
    return st_clock_read_ns(CLOCK_MONOTONIC);
}

static inline uint64_t st_clock_to_ns(const struct st_clock *c, uint64_t ticks)
{
    return (uint64_t)(((unsigned __int128)ticks * c->ns_per_tick_q32 + (1u << 31)) >> 32);
}

/* A duration between two tick readings; 0 if the later one reads earlier
 * (another CPU's TSC a little behind). */
static inline uint64_t st_clock_elapsed_ns(const struct st_clock *c, uint64_t from, uint64_t to)
{
    return to > from ? st_clock_to_ns(c, to - from) : 0;
}

/* The time of a tick reading, by the anchor of the thread that took it. */
static inline uint64_t st_clock_at(const struct st_clock *c, const struct st_anchor *a,
                                   uint64_t ticks)
{
    if (ticks >= a->ticks)
        return a->ns + st_clock_to_ns(c, ticks - a->ticks);
    uint64_t back = st_clock_to_ns(c, a->ticks - ticks);
    return a->ns > back ? a->ns - back : 0;
}

/* Starts the clock: TSC when `tsc` says it is invariant, with the baseline
 * (ticks, ns) read now. */
void st_clock_init(struct st_clock *c, int tsc, uint64_t ticks, uint64_t ns);
/* Sets the rate from the baseline to a later pair (ticks, ns); returns 0,
 * or -1 when the pair is too close to the baseline to tell. */
int st_clock_calibrate(struct st_clock *c, uint64_t ticks, uint64_t ns);
/* Ticks in a duration: the bar a fast path compares against. */
uint64_t st_clock_ticks_for(const struct st_clock *c, uint64_t ns);
/* Whether this CPU's TSC is invariant (constant rate, runs in deep sleep). */
int st_clock_tsc_invariant(void);

#endif /* STALLTRACE_CLOCK_H */

/* clock.c - calibration of the hot paths' clock (clock.h): the TSC's rate
 * against CLOCK_MONOTONIC. A plain unit: the tests link it directly.
 */
#include "clock.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

/* Closer than this, clock-read jitter (tens of ns) would skew the rate. */
#define ST_CLOCK_MIN_BASELINE_NS 20000u

void st_clock_init(struct st_clock *c, int tsc, uint64_t ticks, uint64_t ns)
{
    c->tsc = tsc;
    c->base_ticks = ticks;
    c->base_ns = ns;
    c->ns_per_tick_q32 = (uint64_t)1 << 32;    /* right for ns; a first guess for TSC */
}

int st_clock_calibrate(struct st_clock *c, uint64_t ticks, uint64_t ns)
{
    if (!c->tsc)
        return 0;
    if (ticks <= c->base_ticks || ns < c->base_ns + ST_CLOCK_MIN_BASELINE_NS)
        return -1;
    uint64_t dt = ticks - c->base_ticks;
    unsigned __int128 q = (((unsigned __int128)(ns - c->base_ns) << 32) + dt / 2) / dt;
    if (q == 0 || q > ((unsigned __int128)1 << 40))    /* below 4 MHz: not a TSC */
        return -1;
    __atomic_store_n(&c->ns_per_tick_q32, (uint64_t)q, __ATOMIC_RELAXED);
    return 0;
}

uint64_t st_clock_ticks_for(const struct st_clock *c, uint64_t ns)
{
    uint64_t rate = __atomic_load_n(&c->ns_per_tick_q32, __ATOMIC_RELAXED);
    unsigned __int128 ticks = ((unsigned __int128)ns << 32) / (rate ? rate : 1);
    return ticks > UINT64_MAX ? UINT64_MAX : (uint64_t)ticks;
}

int st_clock_tsc_invariant(void)
{
#if defined(__x86_64__)
    unsigned a, b, cx, d;
    if (__get_cpuid_max(0x80000000u, 0) < 0x80000007u)
        return 0;
    __cpuid(0x80000007u, a, b, cx, d);
    return (d >> 8) & 1;
#else
    return 0;
#endif
}

/* timebase.c - the recorder's tick clock (clock.h): chosen and calibrated at
 * start, refined each time a thread re-anchors, so that durations in ticks
 * and times since start agree with CLOCK_MONOTONIC.
 */
#include <sys/prctl.h>

#include "recorder.h"

/* A thread re-anchors about once a second: the rate's error times this is
 * how far its times can drift from CLOCK_MONOTONIC (microseconds). */
#define ST_ANCHOR_NS 1000000000u

struct st_hot st_hot ST_HOT_DATA;

static int tsc_usable(void)
{
    int mode = 0;
    /* A process that made rdtsc fault (PR_SET_TSC) keeps working: it gets ns. */
    return st_clock_tsc_invariant() && prctl(PR_GET_TSC, &mode, 0, 0, 0) == 0 &&
           mode == PR_TSC_ENABLE;
}

static void set_bars(void)
{
    st_hot.slow_bar_ticks = st_clock_ticks_for(&st_hot.clock, st_rec.slow_bar_ns);
    st_hot.anchor_ticks = st_clock_ticks_for(&st_hot.clock, ST_ANCHOR_NS);
}

/* At start, once start_mono_ns and slow_bar_ns are set: the baseline. */
void st_clock_start(void)
{
    struct st_clock *c = &st_hot.clock;
    int tsc = tsc_usable();
    st_clock_init(c, tsc, 0, 0);
    uint64_t ticks = st_clock_ticks(c);
    st_clock_init(c, tsc, ticks, st_clock_read_ns(CLOCK_MONOTONIC));
    set_bars();
}

/* At the end of start-up: the first rate, measured over the recorder's own
 * start-up and, if that was quicker than clock.c's minimum baseline (20 us),
 * over a wait for the rest (once per process). */
void st_clock_settle(void)
{
    struct st_clock *c = &st_hot.clock;
    if (!c->tsc)
        return;
    for (int i = 0; i < 100000; i++) {
        if (st_clock_calibrate(c, st_clock_ticks(c), st_clock_read_ns(CLOCK_MONOTONIC)) == 0) {
            set_bars();
            return;
        }
    }
    c->tsc = 0;    /* the TSC did not move: count in ns */
    st_clock_init(c, 0, 0, 0);
    set_bars();
}

void st_anchor_refresh(struct st_tls *t)
{
    uint64_t ticks = st_ticks(), ns = st_clock_read_ns(CLOCK_MONOTONIC);
    if (st_clock_calibrate(&st_hot.clock, ticks, ns) == 0)
        set_bars();
    t->anchor.ticks = ticks;
    t->anchor.ns = ns > st_rec.start_mono_ns ? ns - st_rec.start_mono_ns : 0;
    t->anchor_ok = 1;
}

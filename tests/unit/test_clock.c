/* test_clock.c - the recorder's tick clock, linked directly: calibration
 * against made-up (ticks, ns) pairs, the fixed-point conversions at the
 * sizes a long-running process reaches, and the real TSC against
 * CLOCK_MONOTONIC on this machine. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <time.h>

#include "../../preload/clock.h"

/* A 2.5 GHz TSC: 0.4 ns per tick. */
static struct st_clock tsc_2500mhz(void)
{
    struct st_clock c;
    st_clock_init(&c, 1, 1000000000ull, 5000000000ull);
    cr_assert_eq(st_clock_calibrate(&c, 1000000000ull + 2500000000ull, 5000000000ull + 1000000000ull), 0);
    return c;
}

Test(clock, calibrates_the_rate)
{
    struct st_clock c = tsc_2500mhz();
    cr_assert_eq(st_clock_to_ns(&c, 2500), 1000);
    cr_assert_eq(st_clock_ticks_for(&c, 1000), 2500);
}

Test(clock, refuses_a_baseline_too_short_or_backwards)
{
    struct st_clock c;
    st_clock_init(&c, 1, 1000, 1000000);
    cr_assert_eq(st_clock_calibrate(&c, 2000, 1000000 + 5000), -1);    /* 5 us: too short */
    cr_assert_eq(st_clock_calibrate(&c, 500, 1000000 + 50000), -1);    /* ticks went back */
    cr_assert_eq(st_clock_calibrate(&c, 1000 + 10, 1000000 + 50000000), -1);  /* 200 Hz */
    cr_assert_eq(c.ns_per_tick_q32, (uint64_t)1 << 32, "a refused pair leaves the rate");
}

Test(clock, nanosecond_mode_is_the_identity)
{
    struct st_clock c;
    st_clock_init(&c, 0, 0, 0);
    cr_assert_eq(st_clock_calibrate(&c, 123, 456), 0);
    cr_assert_eq(st_clock_to_ns(&c, 987654321), 987654321);
    cr_assert_eq(st_clock_ticks_for(&c, 5000000), 5000000);
}

Test(clock, long_durations_do_not_overflow)
{
    struct st_clock c = tsc_2500mhz();
    uint64_t day_ticks = 86400ull * 2500000000ull;      /* 2^47.6: overflows 64-bit q32 math */
    uint64_t day_ns = 86400ull * 1000000000ull, got = st_clock_to_ns(&c, day_ticks);
    /* 32 fractional bits: within a part in 10^9 (86 us a day; anchors are 1 s apart). */
    cr_assert(got > day_ns - day_ns / 1000000000 && got < day_ns + day_ns / 1000000000,
              "a day of ticks is %lu ns", (unsigned long)got);
    cr_assert_eq(st_clock_ticks_for(&c, UINT64_MAX), UINT64_MAX, "saturates");
}

Test(clock, elapsed_is_zero_when_the_later_reading_is_behind)
{
    struct st_clock c = tsc_2500mhz();
    cr_assert_eq(st_clock_elapsed_ns(&c, 5000, 4000), 0);
    cr_assert_eq(st_clock_elapsed_ns(&c, 4000, 6500), 1000);
}

Test(clock, anchors_map_readings_both_sides)
{
    struct st_clock c = tsc_2500mhz();
    struct st_anchor a = {.ticks = 10000000, .ns = 7000000};
    cr_assert_eq(st_clock_at(&c, &a, 10000000 + 2500), 7000000 + 1000);
    cr_assert_eq(st_clock_at(&c, &a, 10000000 - 2500), 7000000 - 1000);
    cr_assert_eq(st_clock_at(&c, &a, 0), 3000000);
    struct st_anchor early = {.ticks = 10000000, .ns = 100};
    cr_assert_eq(st_clock_at(&c, &early, 0), 0, "clamped at the start");
}

static uint64_t mono(void)
{
    return st_clock_read_ns(CLOCK_MONOTONIC);
}

/* The real thing: a rate measured over 20 ms predicts CLOCK_MONOTONIC over
 * the next 50 ms to within 0.1% (the recorder refines it every second). */
Test(clock, the_tsc_follows_clock_monotonic)
{
    if (!st_clock_tsc_invariant())
        cr_skip_test("no invariant TSC here");
    struct st_clock c;
    st_clock_init(&c, 1, 0, 0);
    st_clock_init(&c, 1, st_clock_ticks(&c), mono());
    struct timespec nap = {0, 20000000};
    nanosleep(&nap, NULL);
    cr_assert_eq(st_clock_calibrate(&c, st_clock_ticks(&c), mono()), 0);
    uint64_t t0 = st_clock_ticks(&c), n0 = mono();
    nap.tv_nsec = 50000000;
    nanosleep(&nap, NULL);
    uint64_t t1 = st_clock_ticks(&c), n1 = mono();
    double measured = (double)st_clock_elapsed_ns(&c, t0, t1), truth = (double)(n1 - n0);
    cr_assert(measured > truth * 0.999 && measured < truth * 1.001,
              "ticks say %.0f ns, CLOCK_MONOTONIC %.0f ns", measured, truth);
}

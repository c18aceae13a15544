/* test_procstat.c - the recorder's readings of /proc: schedstat's CPU and
 * run-queue figures, and whether a thread would take a signal now. */
#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "procstat.h"

static const char sleeping_status[] =
    "Name:\tpython3\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t7\n"
    "SigQ:\t0/62811\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n"
    "SigBlk:\t0000000000000000\nSigIgn:\t0000000001001000\n";

Test(procstat, schedstat_line_parses)
{
    uint64_t cpu = 0, runq = 0;
    cr_assert_eq(st_schedstat_parse("1234567 89 12\n", &cpu, &runq), 0);
    cr_assert_eq(cpu, 1234567);
    cr_assert_eq(runq, 89);
    cr_assert_neq(st_schedstat_parse("", &cpu, &runq), 0);
    cr_assert_neq(st_schedstat_parse("12", &cpu, &runq), 0);
    cr_assert_neq(st_schedstat_parse("99999999999999999999999 1 1", &cpu, &runq), 0);
}

Test(procstat, only_a_running_thread_with_the_signal_unblocked_takes_it)
{
    char running[sizeof sleeping_status], blocked[sizeof sleeping_status];
    memcpy(running, sleeping_status, sizeof running);
    memcpy(strstr(running, "S (sleeping)"), "R (running) ", 12);
    cr_assert_not(st_status_takes_signal(sleeping_status, SIGRTMIN + 26));
    cr_assert(st_status_takes_signal(running, 60));
    memcpy(blocked, running, sizeof blocked);
    /* SigBlk with bit 59 (signal 60) set. */
    memcpy(strstr(blocked, "SigBlk:\t") + 8, "0800000000000000", 16);
    cr_assert_not(st_status_takes_signal(blocked, 60));
    cr_assert(st_status_takes_signal(blocked, 10));
    cr_assert_not(st_status_takes_signal("State:\tR (running)\n", 60));
    cr_assert_not(st_status_takes_signal(running, 0));
}

Test(procstat, this_thread_reads_as_running)
{
    struct st_cpu_reading r;
    cr_assert_eq(st_schedstat_read(0, 5, &r), 0);
    cr_assert_eq(r.at_ns, 5);
    cr_assert(st_thread_takes_signal((uint32_t)gettid(), SIGUSR1));
}

Test(procstat, signal_masks_read_blocked_and_pending_of_thread_and_process)
{
    char text[sizeof sleeping_status];
    uint64_t blocked = 1, pending = 1;
    memcpy(text, sleeping_status, sizeof text);
    cr_assert_eq(st_status_signal_masks(text, &blocked, &pending), 0);
    cr_assert_eq(blocked, 0);
    cr_assert_eq(pending, 0);
    memcpy(strstr(text, "SigPnd:\t") + 8, "0000000000000002", 16);
    memcpy(strstr(text, "ShdPnd:\t") + 8, "0800000000000000", 16);
    memcpy(strstr(text, "SigBlk:\t") + 8, "fffffffe7ffbfeff", 16);
    cr_assert_eq(st_status_signal_masks(text, &blocked, &pending), 0);
    cr_assert_eq(blocked, 0xfffffffe7ffbfeffull);
    cr_assert_eq(pending, 0x0800000000000002ull);
    cr_assert_neq(st_status_signal_masks("State:\tS (sleeping)\nSigBlk:\t0000000000000000\n", &blocked,
                                         &pending), 0);
    cr_assert_eq(st_thread_signal_masks((uint32_t)gettid(), &blocked, &pending), 0);
}

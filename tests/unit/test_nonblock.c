/* test_nonblock.c - the recorder's set of non-blocking fds, linked directly:
 * marks and forgets, neighbours untouched, out-of-range fds never marked,
 * and concurrent marking of one word losing nothing. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "../../preload/nonblock.h"

static void fresh(void)
{
    memset(st_nonblock_bits, 0, sizeof st_nonblock_bits);
}

TestSuite(nonblock, .init = fresh);

Test(nonblock, marks_and_forgets_one_fd)
{
    cr_assert_not(st_fd_nonblocking(7));
    st_fd_mark_nonblocking(7);
    cr_assert(st_fd_nonblocking(7));
    cr_assert_not(st_fd_nonblocking(6));
    cr_assert_not(st_fd_nonblocking(8));
    st_fd_forget(7);
    cr_assert_not(st_fd_nonblocking(7));
    st_fd_forget(7);    /* twice: harmless */
    cr_assert_not(st_fd_nonblocking(7));
}

Test(nonblock, out_of_range_fds_are_always_timed)
{
    st_fd_mark_nonblocking(-1);
    st_fd_mark_nonblocking((int)ST_NONBLOCK_FDS);
    cr_assert_not(st_fd_nonblocking(-1));
    cr_assert_not(st_fd_nonblocking((int)ST_NONBLOCK_FDS));
    st_fd_mark_nonblocking((int)ST_NONBLOCK_FDS - 1);
    cr_assert(st_fd_nonblocking((int)ST_NONBLOCK_FDS - 1));
}

static void *mark_odd_or_even(void *arg)
{
    int parity = (int)(intptr_t)arg;
    for (int round = 0; round < 2000; round++)
        for (int fd = parity; fd < 128; fd += 2)
            st_fd_mark_nonblocking(fd);
    return NULL;
}

/* Two threads set bits of the same words: an update lost to a race would
 * leave an fd unmarked. */
Test(nonblock, concurrent_marks_are_not_lost)
{
    pthread_t a, b;
    pthread_create(&a, NULL, mark_odd_or_even, (void *)0);
    pthread_create(&b, NULL, mark_odd_or_even, (void *)1);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    for (int fd = 0; fd < 128; fd++)
        cr_assert(st_fd_nonblocking(fd), "fd %d lost its mark", fd);
}

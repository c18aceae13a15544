/* nonblock.c - the set of file descriptors known to be non-blocking
 * (nonblock.h). Threads share their fds, so the set is process-wide and
 * updated with atomic bit operations.
 */
#include "nonblock.h"

/* Beside the real-function cache every wrapper reads (recorder.h's section
 * st_hot_data): the words of the low fds share its page. */
uint64_t st_nonblock_bits[ST_NONBLOCK_FDS / 64] __attribute__((section("st_hot_data")));

void st_fd_mark_nonblocking(int fd)
{
    unsigned u = (unsigned)fd;
    if (u < ST_NONBLOCK_FDS)
        __atomic_fetch_or(&st_nonblock_bits[u / 64], (uint64_t)1 << (u % 64), __ATOMIC_RELAXED);
}

void st_fd_forget(int fd)
{
    if (st_fd_nonblocking(fd)) {
        unsigned u = (unsigned)fd;
        __atomic_fetch_and(&st_nonblock_bits[u / 64], ~((uint64_t)1 << (u % 64)), __ATOMIC_RELAXED);
    }
}

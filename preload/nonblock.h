/* nonblock.h - file descriptors known to be non-blocking. A read, write,
 * send or recv on one cannot block, so its wrapper times nothing.
 * A plain C unit (a bitmap); the tests link it directly.
 *
 * An fd is marked when it is made non-blocking (socket, accept4, pipe2,
 * socketpair with the flag), set so (F_SETFL, FIONBIO; not a regular file
 * or a disk, which O_NONBLOCK does not stop), or when a timed call on it
 * fails with EAGAIN and F_GETFL says O_NONBLOCK (a blocking socket with
 * SO_RCVTIMEO fails with EAGAIN too). It is forgotten when it is closed,
 * replaced (dup2/dup3), made again, or set blocking. An fd closed behind libc's back
 * (a raw system call, fclose's internal close) and reused as a blocking one
 * keeps the mark: its blocking calls go untimed, and a loop stall they cause
 * is still caught, with the call in its sampled stacks.
 */
#ifndef STALLTRACE_NONBLOCK_H
#define STALLTRACE_NONBLOCK_H

#include <stdint.h>

#define ST_NONBLOCK_FDS 65536u    /* fds above are simply always timed */

extern uint64_t st_nonblock_bits[ST_NONBLOCK_FDS / 64];

static inline int st_fd_nonblocking(int fd)
{
    unsigned u = (unsigned)fd;
    return u < ST_NONBLOCK_FDS &&
           ((__atomic_load_n(&st_nonblock_bits[u / 64], __ATOMIC_RELAXED) >> (u % 64)) & 1);
}

void st_fd_mark_nonblocking(int fd);
/* Cheap when the fd was not marked: one load. */
void st_fd_forget(int fd);

#endif /* STALLTRACE_NONBLOCK_H */

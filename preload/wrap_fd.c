/* wrap_fd.c - the calls that make an fd, end it, reuse its number or set
 * its flags keep the non-blocking set (nonblock.h) right: an fd made or set
 * non-blocking is marked, any other forgotten. None is timed.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "nonblock.h"
#include "recorder.h"

/* O_NONBLOCK keeps sockets, pipes and devices from blocking, not reads of
 * a regular file or a disk: those stay timed. */
static void set_blocking_mode(int fd, int nonblocking)
{
    struct stat st;
    int saved_errno = errno;
    if (nonblocking && syscall(SYS_fstat, fd, &st) == 0 && !S_ISREG(st.st_mode) &&
        !S_ISBLK(st.st_mode) && !S_ISDIR(st.st_mode))
        st_fd_mark_nonblocking(fd);
    else
        st_fd_forget(fd);
    errno = saved_errno;
}

/* A new fd, non-blocking from birth or not (sockets, pipes: never files). */
static void born(int fd, int nonblocking)
{
    if (nonblocking)
        st_fd_mark_nonblocking(fd);
    else
        st_fd_forget(fd);
}

ST_EXPORT int close(int fd)
{
    __typeof__(&close) real = ST_REAL(close);
    st_fd_forget(fd);
    if (ST_UNLIKELY(real == NULL))
        return (int)syscall(SYS_close, fd);
    return real(fd);
}

ST_EXPORT int dup(int fd)
{
    __typeof__(&dup) real = ST_REAL(dup);
    int r = real != NULL ? real(fd) : (int)syscall(SYS_dup, fd);
    st_fd_forget(r);
    return r;
}

ST_EXPORT int dup2(int fd, int fd2)
{
    __typeof__(&dup2) real = ST_REAL(dup2);
    st_fd_forget(fd2);
    if (ST_UNLIKELY(real == NULL))
        return (int)syscall(SYS_dup2, fd, fd2);
    return real(fd, fd2);
}

ST_EXPORT int dup3(int fd, int fd2, int flags)
{
    __typeof__(&dup3) real = ST_REAL(dup3);
    st_fd_forget(fd2);
    if (ST_UNLIKELY(real == NULL))
        return (int)syscall(SYS_dup3, fd, fd2, flags);
    return real(fd, fd2, flags);
}

/* fcntl's third argument is read as a pointer, as glibc reads it. F_SETFL
 * may clear O_NONBLOCK; the F_DUPFD commands make a new fd. */
#define WRAP_FCNTL(name)                                                       \
    ST_EXPORT int name(int fd, int cmd, ...)                                  \
    {                                                                         \
        va_list ap;                                                           \
        va_start(ap, cmd);                                                    \
        void *arg = va_arg(ap, void *);                                       \
        va_end(ap);                                                           \
        __typeof__(&fcntl) real = ST_REAL(name);                              \
        int r = real != NULL ? real(fd, cmd, arg) : (int)syscall(SYS_fcntl, fd, cmd, arg); \
        if (cmd == F_SETFL)                                                   \
            set_blocking_mode(fd, r == 0 && ((long)arg & O_NONBLOCK));        \
        else if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)                    \
            st_fd_forget(r);                                                  \
        return r;                                                             \
    }

int fcntl64(int fd, int cmd, ...);
WRAP_FCNTL(fcntl)
WRAP_FCNTL(fcntl64)

ST_EXPORT int ioctl(int fd, unsigned long request, ...)
{
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    __typeof__(&ioctl) real = ST_REAL(ioctl);
    int r = real != NULL ? real(fd, request, arg) : (int)syscall(SYS_ioctl, fd, request, arg);
    if (request == FIONBIO)
        set_blocking_mode(fd, r == 0 && arg != NULL && *(const int *)arg != 0);
    return r;
}

ST_EXPORT int socket(int domain, int type, int protocol)
{
    __typeof__(&socket) real = ST_REAL(socket);
    int r = real != NULL ? real(domain, type, protocol)
                         : (int)syscall(SYS_socket, domain, type, protocol);
    born(r, type & SOCK_NONBLOCK);
    return r;
}

/* Two new fds at once. */
static int born_pair(int r, const int fds[2], int nonblocking)
{
    if (r == 0) {
        born(fds[0], nonblocking);
        born(fds[1], nonblocking);
    }
    return r;
}

ST_EXPORT int socketpair(int domain, int type, int protocol, int fds[2])
{
    __typeof__(&socketpair) real = ST_REAL(socketpair);
    return born_pair(real != NULL ? real(domain, type, protocol, fds)
                                  : (int)syscall(SYS_socketpair, domain, type, protocol, fds),
                     fds, type & SOCK_NONBLOCK);
}

/* A pipe the recorder makes for itself (libunwind's, to test addresses,
 * made at a loop thread's first stack) would take the lowest free numbers,
 * the ones the program expects its next fds to get (CPython's test_os
 * wants two consecutive ones): it moves near the top of the first 1024. */
static void move_out_of_the_way(int r, int fds[2], int flags)
{
    struct rlimit rl;
    if (r != 0 || syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, &rl) != 0 || rl.rlim_cur < 256)
        return;
    long floor = (long)(rl.rlim_cur < 1024 ? rl.rlim_cur : 1024) - 64;
    int cmd = (flags & O_CLOEXEC) ? F_DUPFD_CLOEXEC : F_DUPFD;
    for (int i = 0; i < 2; i++) {
        if (fds[i] >= floor)
            continue;
        long high = syscall(SYS_fcntl, fds[i], cmd, floor);
        if (high >= 0) {
            syscall(SYS_close, fds[i]);
            fds[i] = (int)high;
        }
    }
}

static int own_pipe(int r, int fds[2], int flags)
{
    if (ST_UNLIKELY(st_tls.recorder_depth)) {
        int saved_errno = errno;
        move_out_of_the_way(r, fds, flags);
        errno = saved_errno;
    }
    return born_pair(r, fds, flags & O_NONBLOCK);
}

ST_EXPORT int pipe(int fds[2])
{
    __typeof__(&pipe) real = ST_REAL(pipe);
    return own_pipe(real != NULL ? real(fds) : (int)syscall(SYS_pipe2, fds, 0), fds, 0);
}

ST_EXPORT int pipe2(int fds[2], int flags)
{
    __typeof__(&pipe2) real = ST_REAL(pipe2);
    return own_pipe(real != NULL ? real(fds, flags) : (int)syscall(SYS_pipe2, fds, flags), fds,
                    flags);
}

/* wrap_io.c - blocking calls: sockets, files, name lookup, waits for
 * children (the sleeps: wrap_sleep.c). Each costs two tick reads unless it was slow (call.c); a read,
 * write, send or recv on an fd known to be non-blocking (nonblock.h) costs
 * one bit test. Fortified and 64-bit aliases report as their plain call.
 */
#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nonblock.h"
#include "recorder.h"

ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen);
ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
                       struct sockaddr *addr, socklen_t *addrlen);
ssize_t __pread_chk(int fd, void *buf, size_t n, off_t off, size_t buflen);
ssize_t __pread64_chk(int fd, void *buf, size_t n, off64_t off, size_t buflen);
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);

/* A timed call on fd failed: if it failed for want of data on an fd set
 * non-blocking, the fd's later calls need no timing. */
static __attribute__((noinline, cold)) void io_failed(int fd)
{
    int saved_errno = errno;
    if (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK || saved_errno == EINPROGRESS) {
        long flags = syscall(SYS_fcntl, fd, F_GETFL);
        if (flags >= 0 && (flags & O_NONBLOCK))
            st_fd_mark_nonblocking(fd);
    }
    errno = saved_errno;
}

/* One wrapper: resolve, time, call, check. `fallback` runs when the real
 * function cannot be resolved (a lookup re-entered itself); a call for which
 * `untimed` holds is passed straight through; `after` sees the result r. */
#define WRAP_WITH(call_id, ret_t, name, params, args, fallback, untimed, after) \
    ST_EXPORT ret_t name params                                               \
    {                                                                         \
        __typeof__(&name) real = ST_REAL(name);                               \
        if (ST_UNLIKELY(real == NULL))                                        \
            return fallback;                                                  \
        if (untimed)                                                          \
            return real args;                                                 \
        uint64_t t0 = st_call_enter(call_id);                                 \
        ret_t r = real args;                                                  \
        after;                                                                \
        st_call_leave(call_id, t0, (void *)real);                             \
        return r;                                                             \
    }

#define WRAP(call_id, ret_t, name, params, args, fallback)                     \
    WRAP_WITH(call_id, ret_t, name, params, args, fallback, 0, (void)0)

/* A call on an fd that may be non-blocking: the first parameter is `fd`. */
#define WRAP_FD(call_id, ret_t, name, params, args, fallback)                  \
    WRAP_WITH(call_id, ret_t, name, params, args, fallback, st_fd_nonblocking(fd), \
              if (ST_UNLIKELY(r < 0) && t0 != 0) io_failed(fd))

/* A call that makes a new fd: a number reused from a closed non-blocking
 * one must not keep its mark. */
#define WRAP_NEW_FD(call_id, name, params, args, fallback)                     \
    WRAP_WITH(call_id, int, name, params, args, (int)(fallback), 0, st_fd_forget(r))

/* Reads and writes. */
WRAP_FD(ST_CALL_READ, ssize_t, read, (int fd, void *buf, size_t n), (fd, buf, n),
     syscall(SYS_read, fd, buf, n))
WRAP_FD(ST_CALL_READ, ssize_t, __read_chk, (int fd, void *buf, size_t n, size_t buflen),
     (fd, buf, n, buflen), syscall(SYS_read, fd, buf, n))
WRAP_FD(ST_CALL_WRITE, ssize_t, write, (int fd, const void *buf, size_t n), (fd, buf, n),
     syscall(SYS_write, fd, buf, n))
WRAP(ST_CALL_PREAD, ssize_t, pread, (int fd, void *buf, size_t n, off_t off),
     (fd, buf, n, off), syscall(SYS_pread64, fd, buf, n, off))
WRAP(ST_CALL_PREAD, ssize_t, pread64, (int fd, void *buf, size_t n, off64_t off),
     (fd, buf, n, off), syscall(SYS_pread64, fd, buf, n, off))
WRAP(ST_CALL_PREAD, ssize_t, __pread_chk, (int fd, void *buf, size_t n, off_t off, size_t bl),
     (fd, buf, n, off, bl), syscall(SYS_pread64, fd, buf, n, off))
WRAP(ST_CALL_PREAD, ssize_t, __pread64_chk,
     (int fd, void *buf, size_t n, off64_t off, size_t bl), (fd, buf, n, off, bl),
     syscall(SYS_pread64, fd, buf, n, off))
WRAP(ST_CALL_PWRITE, ssize_t, pwrite, (int fd, const void *buf, size_t n, off_t off),
     (fd, buf, n, off), syscall(SYS_pwrite64, fd, buf, n, off))
WRAP(ST_CALL_PWRITE, ssize_t, pwrite64, (int fd, const void *buf, size_t n, off64_t off),
     (fd, buf, n, off), syscall(SYS_pwrite64, fd, buf, n, off))
WRAP_FD(ST_CALL_READV, ssize_t, readv, (int fd, const struct iovec *iov, int n), (fd, iov, n),
     syscall(SYS_readv, fd, iov, n))
WRAP_FD(ST_CALL_WRITEV, ssize_t, writev, (int fd, const struct iovec *iov, int n), (fd, iov, n),
     syscall(SYS_writev, fd, iov, n))

/* Sockets. */
WRAP_FD(ST_CALL_RECV, ssize_t, recv, (int fd, void *buf, size_t n, int flags),
     (fd, buf, n, flags), syscall(SYS_recvfrom, fd, buf, n, flags, NULL, NULL))
WRAP_FD(ST_CALL_RECV, ssize_t, __recv_chk, (int fd, void *buf, size_t n, size_t bl, int flags),
     (fd, buf, n, bl, flags), syscall(SYS_recvfrom, fd, buf, n, flags, NULL, NULL))
WRAP_FD(ST_CALL_RECVFROM, ssize_t, recvfrom,
     (int fd, void *buf, size_t n, int flags, struct sockaddr *a, socklen_t *al),
     (fd, buf, n, flags, a, al), syscall(SYS_recvfrom, fd, buf, n, flags, a, al))
WRAP_FD(ST_CALL_RECVFROM, ssize_t, __recvfrom_chk,
     (int fd, void *buf, size_t n, size_t bl, int flags, struct sockaddr *a, socklen_t *al),
     (fd, buf, n, bl, flags, a, al), syscall(SYS_recvfrom, fd, buf, n, flags, a, al))
WRAP_FD(ST_CALL_RECVMSG, ssize_t, recvmsg, (int fd, struct msghdr *msg, int flags),
     (fd, msg, flags), syscall(SYS_recvmsg, fd, msg, flags))
WRAP_FD(ST_CALL_SEND, ssize_t, send, (int fd, const void *buf, size_t n, int flags),
     (fd, buf, n, flags), syscall(SYS_sendto, fd, buf, n, flags, NULL, 0))
WRAP_FD(ST_CALL_SENDTO, ssize_t, sendto,
     (int fd, const void *buf, size_t n, int flags, const struct sockaddr *a, socklen_t al),
     (fd, buf, n, flags, a, al), syscall(SYS_sendto, fd, buf, n, flags, a, al))
WRAP_FD(ST_CALL_SENDMSG, ssize_t, sendmsg, (int fd, const struct msghdr *msg, int flags),
     (fd, msg, flags), syscall(SYS_sendmsg, fd, msg, flags))
WRAP_FD(ST_CALL_CONNECT, int, connect, (int fd, const struct sockaddr *a, socklen_t al),
     (fd, a, al), (int)syscall(SYS_connect, fd, a, al))
WRAP_NEW_FD(ST_CALL_ACCEPT, accept, (int fd, struct sockaddr *a, socklen_t *al), (fd, a, al),
            syscall(SYS_accept, fd, a, al))
WRAP_WITH(ST_CALL_ACCEPT4, int, accept4, (int fd, struct sockaddr *a, socklen_t *al, int flags),
          (fd, a, al, flags), (int)syscall(SYS_accept4, fd, a, al, flags), 0,
          if (flags & SOCK_NONBLOCK) st_fd_mark_nonblocking(r); else st_fd_forget(r))
WRAP(ST_CALL_GETADDRINFO, int, getaddrinfo,
     (const char *node, const char *service, const struct addrinfo *hints,
      struct addrinfo **res),
     (node, service, hints, res), EAI_SYSTEM)

/* Files and processes. */
WRAP(ST_CALL_FSYNC, int, fsync, (int fd), (fd), (int)syscall(SYS_fsync, fd))
WRAP(ST_CALL_FDATASYNC, int, fdatasync, (int fd), (fd), (int)syscall(SYS_fdatasync, fd))
WRAP(ST_CALL_FLOCK, int, flock, (int fd, int op), (fd, op), (int)syscall(SYS_flock, fd, op))
WRAP(ST_CALL_WAITPID, pid_t, waitpid, (pid_t pid, int *status, int options),
     (pid, status, options), (pid_t)syscall(SYS_wait4, pid, status, options, NULL))
WRAP(ST_CALL_WAIT4, pid_t, wait4, (pid_t pid, int *status, int options, struct rusage *ru),
     (pid, status, options, ru), (pid_t)syscall(SYS_wait4, pid, status, options, ru))
WRAP_NEW_FD(ST_CALL_OPEN, __open_2, (const char *path, int flags), (path, flags),
            syscall(SYS_openat, AT_FDCWD, path, flags))
WRAP_NEW_FD(ST_CALL_OPEN, __open64_2, (const char *path, int flags), (path, flags),
            syscall(SYS_openat, AT_FDCWD, path, flags))
WRAP_NEW_FD(ST_CALL_OPENAT, __openat_2, (int dirfd, const char *path, int flags),
            (dirfd, path, flags), syscall(SYS_openat, dirfd, path, flags))
WRAP_NEW_FD(ST_CALL_OPENAT, __openat64_2, (int dirfd, const char *path, int flags),
            (dirfd, path, flags), syscall(SYS_openat, dirfd, path, flags))

/* open and openat take a mode only when they may create a file. */
#define OPEN_MODE(flags)                                                       \
    mode_t mode = 0;                                                          \
    if (((flags) & O_CREAT) || ((flags) & O_TMPFILE) == O_TMPFILE) {          \
        va_list ap;                                                           \
        va_start(ap, flags);                                                  \
        mode = va_arg(ap, mode_t);                                            \
        va_end(ap);                                                           \
    }

#define WRAP_OPEN(call_id, name, params, args, fallback)                       \
    ST_EXPORT int name params                                                 \
    {                                                                         \
        OPEN_MODE(flags);                                                     \
        __typeof__(&name) real = ST_REAL(name);                               \
        if (ST_UNLIKELY(real == NULL))                                        \
            return (int)fallback;                                             \
        uint64_t t0 = st_call_enter(call_id);                                 \
        int r = real args;                                                    \
        st_fd_forget(r);                                                      \
        st_call_leave(call_id, t0, (void *)real);                             \
        return r;                                                             \
    }

WRAP_OPEN(ST_CALL_OPEN, open, (const char *path, int flags, ...), (path, flags, mode),
          syscall(SYS_openat, AT_FDCWD, path, flags, mode))
WRAP_OPEN(ST_CALL_OPEN, open64, (const char *path, int flags, ...), (path, flags, mode),
          syscall(SYS_openat, AT_FDCWD, path, flags, mode))
WRAP_OPEN(ST_CALL_OPENAT, openat, (int dirfd, const char *path, int flags, ...),
          (dirfd, path, flags, mode), syscall(SYS_openat, dirfd, path, flags, mode))
WRAP_OPEN(ST_CALL_OPENAT, openat64, (int dirfd, const char *path, int flags, ...),
          (dirfd, path, flags, mode), syscall(SYS_openat, dirfd, path, flags, mode))

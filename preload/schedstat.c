/* schedstat.c - reads a thread's schedstat line, without libc's buffered I/O
 * or our own wrappers, from the watchdog and from a stalled thread's slow path. */
#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "schedstat.h"

static const char *parse_u64(const char *p, uint64_t *out)
{
    uint64_t v = 0;
    if (*p < '0' || *p > '9')
        return NULL;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (UINT64_MAX - 9) / 10)
            return NULL;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return p;
}

int st_schedstat_parse(const char *text, uint64_t *cpu_ns, uint64_t *runq_ns)
{
    const char *p = parse_u64(text, cpu_ns);
    if (p == NULL || *p != ' ')
        return -1;
    p = parse_u64(p + 1, runq_ns);
    return p == NULL ? -1 : 0;
}

static char *put_u32(char *p, uint32_t v)
{
    char digits[10];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        *p++ = digits[--n];
    return p;
}

int st_schedstat_read(uint32_t tid, uint64_t at_ns, struct st_cpu_reading *r)
{
    char path[64] = "/proc/thread-self/schedstat";
    if (tid != 0) {
        static const char prefix[] = "/proc/self/task/", suffix[] = "/schedstat";
        char *p = path;
        for (const char *s = prefix; *s; s++)
            *p++ = *s;
        p = put_u32(p, tid);
        for (const char *s = suffix; *s; s++)
            *p++ = *s;
        *p = '\0';
    }
    int saved_errno = errno;
    long fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    int ok = -1;
    if (fd >= 0) {
        char text[96];
        long n = syscall(SYS_read, (int)fd, text, sizeof text - 1);
        syscall(SYS_close, (int)fd);
        if (n > 0) {
            text[n] = '\0';
            ok = st_schedstat_parse(text, &r->cpu_ns, &r->runq_ns);
        }
    }
    errno = saved_errno;
    if (ok == 0)
        r->at_ns = at_ns;
    return ok;
}

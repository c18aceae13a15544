/* procstat.c - reads a thread's schedstat and status files without libc's
 * buffered I/O or our own wrappers, from the watchdog and a stalled thread's slow path. */
#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <string.h>
#include <unistd.h>

#include "procstat.h"

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

/* "/proc/thread-self/NAME" or "/proc/self/task/TID/NAME" into path. */
static void task_path(char *path, uint32_t tid, const char *name)
{
    static const char self[] = "/proc/thread-self/", task[] = "/proc/self/task/";
    char *p = path;
    if (tid == 0) {
        for (const char *s = self; *s; s++)
            *p++ = *s;
    } else {
        for (const char *s = task; *s; s++)
            *p++ = *s;
        p = put_u32(p, tid);
        *p++ = '/';
    }
    for (; *name; name++)
        *p++ = *name;
    *p = '\0';
}

/* The file's first len-1 bytes, terminated; their count, or -1. */
static long read_task_file(uint32_t tid, const char *name, char *text, size_t len)
{
    char path[64];
    task_path(path, tid, name);
    int saved_errno = errno;
    long n = -1, fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd >= 0) {
        n = syscall(SYS_read, (int)fd, text, len - 1);
        syscall(SYS_close, (int)fd);
    }
    errno = saved_errno;
    if (n < 0)
        return -1;
    text[n] = '\0';
    return n;
}

int st_schedstat_read(uint32_t tid, uint64_t at_ns, struct st_cpu_reading *r)
{
    char text[96];
    if (read_task_file(tid, "schedstat", text, sizeof text) <= 0 ||
        st_schedstat_parse(text, &r->cpu_ns, &r->runq_ns) != 0)
        return -1;
    r->at_ns = at_ns;
    return 0;
}

static const char *line_after(const char *text, const char *key)
{
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        size_t k = 0;
        while (key[k] && p[k] == key[k])
            k++;
        if (key[k] == '\0')
            return p + k;
    }
    return NULL;
}

int st_status_signal(const char *text, int sig, int *running)
{
    const char *state = line_after(text, "State:"), *blocked = line_after(text, "SigBlk:");
    *running = 0;
    if (state == NULL || blocked == NULL || sig < 1 || sig > 64)
        return 0;
    while (*state == ' ' || *state == '\t')
        state++;
    while (*blocked == ' ' || *blocked == '\t')
        blocked++;
    uint64_t mask = 0;
    int digits = 0;
    for (; digits < 16; digits++, blocked++) {
        char c = *blocked;
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            break;
        mask = mask << 4 | (uint64_t)v;
    }
    *running = *state == 'R';
    return digits == 16 && !(mask >> (sig - 1) & 1);
}

int st_status_takes_signal(const char *text, int sig)
{
    int running;
    return st_status_signal(text, sig, &running) && running;
}

int st_thread_signal_unblocked(uint32_t tid, int sig, int *running)
{
    char text[4096];
    *running = 0;
    return read_task_file(tid, "status", text, sizeof text) > 0 && st_status_signal(text, sig, running);
}

int st_thread_takes_signal(uint32_t tid, int sig)
{
    char text[4096];
    return read_task_file(tid, "status", text, sizeof text) > 0 && st_status_takes_signal(text, sig);
}

/* The 16 hex digits after key (SigBlk:, SigPnd:, ShdPnd:); 0 when absent. */
static int hex_field(const char *text, const char *key, uint64_t *mask)
{
    const char *p = line_after(text, key);
    if (p == NULL)
        return 0;
    while (*p == ' ' || *p == '\t')
        p++;
    *mask = 0;
    int digits = 0;
    for (; digits < 16; digits++, p++) {
        int v = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
        if (v < 0)
            break;
        *mask = *mask << 4 | (uint64_t)v;
    }
    return digits == 16;
}

int st_status_signal_masks(const char *text, uint64_t *blocked, uint64_t *pending)
{
    uint64_t pnd, shd;
    if (!hex_field(text, "SigBlk:", blocked) || !hex_field(text, "SigPnd:", &pnd) ||
        !hex_field(text, "ShdPnd:", &shd))
        return -1;
    *pending = pnd | shd;
    return 0;
}

int st_thread_signal_masks(uint32_t tid, uint64_t *blocked, uint64_t *pending)
{
    char text[4096];
    if (read_task_file(tid, "status", text, sizeof text) <= 0)
        return -1;
    return st_status_signal_masks(text, blocked, pending);
}

/* codecopy.c - note the executable mappings that copy a module's code
 * elsewhere (V8's remapped builtins), so the analyzer can name them.
 */
#include <fcntl.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "recorder.h"

#define MAX_MAPPINGS 512u
#define MAX_COPIES 32u
#define RESCAN_NS 1000000000ull    /* /proc/self/maps costs ~0.2 ms: once a second at most */

/* An executable mapping of a file, from /proc/self/maps. */
struct mapping {
    uint64_t lo, hi, offset, dev, inode;
};

static uint64_t hex(const char **p, const char *end)
{
    uint64_t v = 0;
    for (; *p < end; (*p)++) {
        char c = **p;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            break;
        v = v * 16 + (uint64_t)d;
    }
    return v;
}

static uint64_t dec(const char **p, const char *end)
{
    uint64_t v = 0;
    for (; *p < end && **p >= '0' && **p <= '9'; (*p)++)
        v = v * 10 + (uint64_t)(**p - '0');
    return v;
}

/* "lo-hi perms offset major:minor inode path": 1 for an executable file mapping. */
static int parse(const char *p, const char *end, struct mapping *m)
{
    m->lo = hex(&p, end);
    if (p >= end || *p++ != '-')
        return 0;
    m->hi = hex(&p, end);
    if (end - p < 6 || p[0] != ' ' || p[3] != 'x')
        return 0;
    p += 6;
    m->offset = hex(&p, end);
    if (p >= end || *p++ != ' ')
        return 0;
    m->dev = hex(&p, end) << 32;
    if (p >= end || *p++ != ':')
        return 0;
    m->dev |= hex(&p, end);
    if (p >= end || *p++ != ' ')
        return 0;
    m->inode = dec(&p, end);
    return m->inode != 0 && m->hi > m->lo;
}

static struct {
    uint64_t start, size;
} noted[MAX_COPIES];
static unsigned nnoted;

static int already_noted(uint64_t start, uint64_t size)
{
    for (unsigned i = 0; i < nnoted; i++)
        if (noted[i].start == start && noted[i].size == size)
            return 1;
    return 0;
}

int st_code_copies_cover(uintptr_t addr)
{
    unsigned n = __atomic_load_n(&nnoted, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < n; i++)
        if (addr - noted[i].start < noted[i].size)
            return 1;
    return 0;
}

/* Raw syscalls and static buffers, one caller at a time: safe in the
 * sampling signal's handler. V8 unmaps its copy before the process ends,
 * so it is noted while stacks are taken, not only at exit. */
void st_code_copies_note(int now)
{
    static int scanning;
    static uint64_t last_ns;
    static struct mapping maps[MAX_MAPPINGS];
    static char buf[1 << 15];
    uint64_t t = st_now_ns();
    if ((!now && last_ns != 0 && t - last_ns < RESCAN_NS) ||
        __atomic_exchange_n(&scanning, 1, __ATOMIC_ACQUIRE))
        return;
    last_ns = t;
    unsigned n = 0;
    int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        __atomic_store_n(&scanning, 0, __ATOMIC_RELEASE);
        return;
    }
    size_t have = 0;
    ssize_t got;
    while (n < MAX_MAPPINGS && (got = syscall(SYS_read, fd, buf + have, sizeof buf - have)) > 0) {
        have += (size_t)got;
        char *line = buf, *nl;
        while (n < MAX_MAPPINGS && (nl = memchr(line, '\n', have - (size_t)(line - buf))) != NULL) {
            n += (unsigned)parse(line, nl, &maps[n]);
            line = nl + 1;
        }
        have -= (size_t)(line - buf);
        memmove(buf, line, have);
        if (have == sizeof buf)
            have = 0;
    }
    syscall(SYS_close, fd);
    /* A mapping outside every module, of the same file and bytes as one
     * inside a module, runs that module's code. */
    for (unsigned i = 0; i < n; i++) {
        uintptr_t lo = (uintptr_t)maps[i].lo;
        if (st_modules_cover(&lo, 1) || already_noted(maps[i].lo, maps[i].hi - maps[i].lo))
            continue;
        for (unsigned j = 0; j < n; j++) {
            const struct mapping *o = &maps[j];
            uintptr_t olo = (uintptr_t)o->lo;
            if (o->dev != maps[i].dev || o->inode != maps[i].inode || !st_modules_cover(&olo, 1) ||
                maps[i].offset < o->offset ||
                maps[i].offset + (maps[i].hi - maps[i].lo) > o->offset + (o->hi - o->lo))
                continue;
            struct st_rec_code_copy r;
            memset(&r, 0, sizeof r);
            r.start = maps[i].lo;
            r.size = maps[i].hi - maps[i].lo;
            r.copy_of = o->lo + (maps[i].offset - o->offset);
            st_ring_put(&st_rec.ring, ST_REC_CODE_COPY, &r, sizeof r);
            if (nnoted < MAX_COPIES) {
                noted[nnoted].start = r.start;
                noted[nnoted].size = r.size;
                __atomic_store_n(&nnoted, nnoted + 1, __ATOMIC_RELEASE);
            }
            break;
        }
    }
    __atomic_store_n(&scanning, 0, __ATOMIC_RELEASE);
}

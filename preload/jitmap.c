/* jitmap.c - the perf map (/tmp/perf-PID.map): its length noted with each
 * stack through JIT code, at exit the entries those stacks point into, and
 * the files node wrote only because `stalltrace run` asked it to.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "recorder.h"

#define MAX_ADDRESSES 65536u

/* The pid in decimal at dst, NUL-terminated; returns the end. */
static char *put_pid(char *dst)
{
    char digits[16];
    int k = 0;
    for (unsigned pid = (unsigned)st_rec.proc_pid; pid || !k; pid /= 10)
        digits[k++] = (char)('0' + pid % 10);
    while (k > 0)
        *dst++ = digits[--k];
    *dst = '\0';
    return dst;
}

static void perf_map_path(char path[64])
{
    static const char prefix[] = "/tmp/perf-";
    memcpy(path, prefix, sizeof prefix - 1);
    memcpy(put_pid(path + sizeof prefix - 1), ".map", 5);
}

/* The runtimes write the map a line at a time (V8 line-buffers it, CPython
 * flushes each entry), so its length now bounds the entries that can name
 * this stack. One stat, only for stacks through code outside every module. */
void st_jitmap_mark(struct st_captured *c)
{
    c->jit_marked = 0;
    c->jit_map_bytes = 0;
    if (c->nframes == 0 || st_modules_cover(c->frames, c->nframes))
        return;
    int saved_errno = errno;
    char path[64];
    struct stat st;
    perf_map_path(path);
    c->jit_marked = 1;
    st_code_copies_note(0);
    long r = syscall(SYS_newfstatat, AT_FDCWD, path, &st, 0);
    if (r == 0 && st.st_size > 0)
        c->jit_map_bytes = (uint64_t)st.st_size;
    else if (r != 0 && errno == ENOENT)
        c->jit_map_bytes = UINT64_MAX; /* no map yet: one written at exit, all at once
                                          (HotSpot's DumpPerfMapAtExit), names it as it was then */
    errno = saved_errno;
}

struct addresses {
    uint64_t *v;
    size_t n;
};

static void collect_stack(struct addresses *a, const uint8_t *rec, size_t stack_off, size_t size)
{
    if (stack_off + sizeof(struct st_stack) > size)
        return;
    const struct st_stack *st = (const struct st_stack *)(rec + stack_off);
    const uint64_t *frames = (const uint64_t *)(st + 1);
    for (unsigned i = 0; i < st->nframes && a->n < MAX_ADDRESSES; i++) {
        if ((const uint8_t *)(frames + i + 1) > rec + size)
            break;
        uintptr_t ip = frames[i];
        if (!st_modules_cover(&ip, 1))
            a->v[a->n++] = ip;
    }
}

/* Addresses of every recorded frame that lies in no module. */
static void collect(struct addresses *a)
{
    const struct st_ring *ring = &st_rec.ring;
    uint64_t head = *ring->head, pos = head > ring->size ? head - ring->size : 0;
    static uint8_t rec[(sizeof(struct st_rec_lock_wait) > sizeof(struct st_rec_task_wait)
                            ? sizeof(struct st_rec_lock_wait) : sizeof(struct st_rec_task_wait)) +
                       ST_STACK_BYTES];
    while (pos < head) {
        const struct st_record *h = (const struct st_record *)(ring->base + (pos & (ring->size - 1)));
        if (h->pos != pos || h->magic != ST_RECORD_MAGIC || h->size < sizeof *h ||
            h->size % ST_RECORD_ALIGN) {
            pos += ST_RECORD_ALIGN;
            continue;
        }
        if (ring->hdr != NULL && st_ring_record_suspect(ring->hdr, pos, h->size)) {
            pos += h->size;        /* a lapped writer's bytes may be in it */
            continue;
        }
        size_t size = h->size < sizeof rec ? h->size : sizeof rec;
        for (size_t i = 0; i < size; i++)
            rec[i] = ring->base[(pos + i) & (ring->size - 1)];
        if (h->type == ST_REC_STALL)
            collect_stack(a, rec, offsetof(struct st_rec_stall, stack), size);
        else if (h->type == ST_REC_SAMPLE)
            collect_stack(a, rec, offsetof(struct st_rec_sample, stack), size);
        else if (h->type == ST_REC_SLOW_CALL)
            collect_stack(a, rec, offsetof(struct st_rec_slow_call, stack), size);
        else if (h->type == ST_REC_LOCK_WAIT)
            collect_stack(a, rec, offsetof(struct st_rec_lock_wait, stack), size);
        else if (h->type == ST_REC_TASK_WAIT)
            collect_stack(a, rec, offsetof(struct st_rec_task_wait, stack), size);
        else if (h->type == ST_REC_POOL_FEED)
            collect_stack(a, rec, offsetof(struct st_rec_pool_feed, stack), size);
        pos += h->size;
    }
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

static int wanted(const struct addresses *a, uint64_t start, uint64_t size)
{
    size_t lo = 0, hi = a->n;
    while (lo < hi) {               /* first address >= start */
        size_t mid = lo + (hi - lo) / 2;
        if (a->v[mid] < start)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < a->n && a->v[lo] - start < size;
}

static uint64_t parse_hex(const char **p, const char *end)
{
    uint64_t v = 0;
    for (; *p < end; (*p)++) {
        char c = **p;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            break;
        v = v * 16 + (uint64_t)d;
    }
    return v;
}

static void skip_0x(const char **p, const char *end)
{
    if (end - *p > 2 && (*p)[0] == '0' && ((*p)[1] == 'x' || (*p)[1] == 'X'))
        *p += 2;
}

/* One "START SIZE NAME" line of the perf map (V8 writes bare hex, HotSpot
 * "0x..." for both numbers); map_end: the offset just past its newline. */
static void emit_line(const struct addresses *a, const char *p, const char *end, uint64_t map_end)
{
    skip_0x(&p, end);
    uint64_t start = parse_hex(&p, end);
    if (p >= end || *p++ != ' ')
        return;
    skip_0x(&p, end);
    uint64_t size = parse_hex(&p, end);
    if (p >= end || *p++ != ' ' || size == 0 || size > UINT32_MAX || !wanted(a, start, size))
        return;
    union {
        struct st_rec_jitsym rec;
        uint8_t bytes[sizeof(struct st_rec_jitsym) + 512 + 2 * sizeof(uint64_t)];
    } buf;
    struct st_rec_jitsym *r = &buf.rec;
    memset(r, 0, sizeof *r);
    r->start = start;
    r->size = (uint32_t)size;
    r->name_len = (uint16_t)(end - p < 512 ? end - p : 512);
    r->flags = ST_JITSYM_MAP_END;
    memcpy(r + 1, p, r->name_len);
    /* The record starts 8-aligned in the ring: so does the offset after the name. */
    size_t at = (sizeof *r + r->name_len + 7) & ~(size_t)7;
    memset(buf.bytes + sizeof *r + r->name_len, 0, at - sizeof *r - r->name_len);
    memcpy(buf.bytes + at, &map_end, sizeof map_end);
    st_ring_put(&st_rec.ring, ST_REC_JITSYM, r, at + sizeof map_end);
}

void st_jitmap_copy(void)
{
    char path[64];
    perf_map_path(path);

    int fd = st_open_own_regular(path, O_RDONLY);    /* never a FIFO planted by another user */
    if (fd < 0)
        return;
    struct addresses a = {malloc(MAX_ADDRESSES * sizeof(uint64_t)), 0};
    char *buf = malloc(1 << 16);
    if (a.v != NULL && buf != NULL) {
        collect(&a);
        qsort(a.v, a.n, sizeof a.v[0], cmp_u64);
        size_t have = 0;
        uint64_t buf_at = 0;       /* map offset of buf[0] */
        ssize_t got;
        while (a.n > 0 && (got = syscall(SYS_read, fd, buf + have, (1 << 16) - have)) > 0) {
            have += (size_t)got;
            char *line = buf, *nl;
            while ((nl = memchr(line, '\n', have - (size_t)(line - buf))) != NULL) {
                emit_line(&a, line, nl, buf_at + (uint64_t)(nl + 1 - buf));
                line = nl + 1;
            }
            buf_at += (uint64_t)(line - buf);
            have -= (size_t)(line - buf);
            memmove(buf, line, have);
            if (have == 1 << 16) {
                buf_at += have;    /* a line longer than the buffer: drop it */
                have = 0;
            }
        }
    }
    free(a.v);
    free(buf);
    syscall(SYS_close, fd);
}

/* Set by `stalltrace run` when it put --perf-basic-prof in NODE_OPTIONS. */
#define RUN_ASKED_ENV "STALLTRACE_RUN_JIT_MAPS"

/* Node, told by NODE_OPTIONS (not by its own command line) to write perf
 * files: the process's executable is node's and no argument asks for them. */
static int run_asked;

static int node_asked_by_run(void)
{
    const struct st_process *p = st_rec.proc;
    if (!run_asked || p == NULL)
        return 0;
    const char *base = strrchr(p->exe, '/');
    base = base ? base + 1 : p->exe;
    if (strncmp(base, "node", 4) != 0)
        return 0;
    static const char *const own_flags[] = {"--perf", "--prof", "--log", "--interpreted-frames"};
    const char *arg = p->argv, *end = p->argv + (p->argv_len < sizeof p->argv ? p->argv_len : sizeof p->argv);
    for (; arg < end && *arg; arg += strlen(arg) + 1)
        for (size_t i = 0; i < sizeof own_flags / sizeof own_flags[0]; i++)
            if (strncmp(arg, own_flags[i], strlen(own_flags[i])) == 0)
                return 0;
    return 1;
}

/* V8's log of the same flag, in the cwd: isolate-0xADDR-PID-v8.log. */
static int is_isolate_log(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strncmp(base, "isolate-0x", 10) != 0)
        return 0;
    const char *p = base + 10;
    while ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))
        p++;
    char tail[32] = "-";
    memcpy(put_pid(tail + 1), "-v8.log", 8);
    return p > base + 10 && strcmp(p, tail) == 0;
}

/* V8 creates its log in the working directory it starts in, before any
 * JavaScript could change it; the program may change its environment too. */
static char start_cwd[4096];

void st_jitmap_note_start(void)
{
    const char *asked = getenv(RUN_ASKED_ENV);
    run_asked = asked != NULL && strcmp(asked, "1") == 0;
    if (run_asked && getcwd(start_cwd, sizeof start_cwd) == NULL)
        start_cwd[0] = '\0';
}

/* Removed only while the name is a regular file of our own user, not a link. */
static void remove_own_file(int dirfd, const char *name)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
        st.st_uid == geteuid())
        unlinkat(dirfd, name, 0);
}

/* V8 has closed both files by the time the process exits. */
void st_jitmap_remove_requested(void)
{
    if (!node_asked_by_run())
        return;
    int saved_errno = errno;
    char map[64];
    perf_map_path(map);
    remove_own_file(AT_FDCWD, map);
    DIR *dir = start_cwd[0] ? opendir(start_cwd) : NULL;
    struct dirent *e;
    while (dir != NULL && (e = readdir(dir)) != NULL)
        if (is_isolate_log(e->d_name))
            remove_own_file(dirfd(dir), e->d_name);
    if (dir != NULL)
        closedir(dir);
    errno = saved_errno;
}

/* dumpfile.c - create, lay out, name, close and compact the dump file (see format.h).
 * The file is made 0600 and unnamed, fully allocated before it is mapped (a
 * sparse mapping would SIGBUS the target on a full disk), and linked to a
 * free name only once its header is written; on a clean exit it is
 * replaced by a compact copy of what it holds.
 */
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "recorder.h"
#include "stalltrace/dumpname.h"

#define ST_MODULE_CAPACITY 1024u
#define ST_THREAD_CAPACITY 512u   /* = ST_THREAD_BITS: pool bitmaps cover every slot */
#define ST_OBJECT_CAPACITY 1024u  /* a power of two: a hash table */
#define ST_QUEUE_CAPACITY 64u     /* a power of two: a hash table (annotate.c) */

/* The dump file as created: a path reopened later must still be it. */
static dev_t dump_dev;
static ino_t dump_ino;

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

static size_t put_str(char *dst, size_t cap, size_t n, const char *s)
{
    while (*s && n + 1 < cap)
        dst[n++] = *s++;
    dst[n] = '\0';
    return n;
}

static size_t put_uint(char *dst, size_t cap, size_t n, uint64_t v)
{
    char digits[24];
    int k = 0;
    do {
        digits[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (k > 0 && n + 1 < cap)
        dst[n++] = digits[--k];
    dst[n] = '\0';
    return n;
}

/* The dump's name from the template (dumpname.h): this process's pid and
 * executable, the time now. */
static void expand_output(const char *pattern, char *out, size_t cap)
{
    char exe[256] = "unknown", pid[24], now[24];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) {
        exe[k] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
            memmove(exe, slash + 1, strlen(slash + 1) + 1);
    }
    put_uint(pid, sizeof pid, 0, (uint64_t)getpid());
    put_uint(now, sizeof now, 0, (uint64_t)time(NULL));
    const struct st_dumpname_values v = {pid, exe, now};
    st_dumpname_expand(pattern, &v, 0, out, cap);
}

/* The process as the kernel knows it, to tell our own file from that of
 * another process with the same pid (another pid namespace, a reused pid). */
struct owner {
    uint64_t pidns, start_ticks;
    uint8_t boot_id[16];
};

static ssize_t read_proc(const char *path, char *buf, size_t cap)
{
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -1;
    ssize_t n = syscall(SYS_read, fd, buf, cap - 1);
    syscall(SYS_close, fd);
    buf[n > 0 ? n : 0] = '\0';
    return n;
}

static uint64_t parse_digits(const char *p)
{
    uint64_t v = 0;
    while (*p >= '0' && *p <= '9')
        v = v * 10 + (uint64_t)(*p++ - '0');
    return v;
}

static void read_owner(struct owner *o)
{
    memset(o, 0, sizeof *o);
    char buf[1024];
    ssize_t k = readlink("/proc/self/ns/pid", buf, sizeof buf - 1);   /* "pid:[4026531836]" */
    if (k > 6) {
        buf[k] = '\0';
        o->pidns = parse_digits(buf + 5);
    }
    /* Field 22 of /proc/self/stat, counted after the ')' that ends the name. */
    if (read_proc("/proc/self/stat", buf, sizeof buf) > 0) {
        char *p = strrchr(buf, ')');
        for (int field = 2; p != NULL && field < 22; field++)
            p = strchr(p + 1, ' ');
        o->start_ticks = p ? parse_digits(p + 1) : 0;
    }
    if (read_proc("/proc/sys/kernel/random/boot_id", buf, sizeof buf) >= 32) {
        unsigned n = 0;
        for (const char *p = buf; *p && n < 32; p++) {
            int d = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
            if (d >= 0)
                o->boot_id[n / 2] = (uint8_t)(o->boot_id[n / 2] << 4 | d), n++;
        }
    }
}

static struct owner self_owner;

/* Opened without blocking (a FIFO), without following a link, and only if
 * it is a regular file of our own user: another user's file is never read. */
int st_open_own_regular(const char *path, int flags)
{
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, flags | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
        syscall(SYS_close, fd);
        errno = EPERM;
        return -1;
    }
    return fd;
}

/* After an exec that bypassed our execve wrapper, the old image's dump is at
 * our path, empty and unfinished: ours to replace, when its owner is
 * provably this very process (same pid namespace, start time and boot).
 * Anything else at the path is left alone. */
static int has_loop_thread(const struct st_file_header *h, uint64_t size)
{
    if (h->thread_size != sizeof(struct st_thread) || h->thread_count > h->thread_capacity ||
        h->threads_offset + (uint64_t)h->thread_capacity * h->thread_size > size)
        return 1;     /* not what we write: keep it */
    const struct st_thread *threads =
        (const struct st_thread *)((const char *)h + h->threads_offset);
    for (uint32_t i = 0; i < h->thread_count; i++)
        if (threads[i].tid != 0 && (threads[i].flags & ST_THREAD_LOOP))
            return 1;
    return 0;
}

static int owned_by_self(const struct st_file_header *h)
{
    return self_owner.pidns != 0 && self_owner.start_ticks != 0 &&
           h->owner_pidns == self_owner.pidns && h->owner_start_ticks == self_owner.start_ticks &&
           memcmp(h->owner_boot_id, self_owner.boot_id, sizeof self_owner.boot_id) == 0;
}

static int is_own_empty_dump(const char *path)
{
    int fd = st_open_own_regular(path, O_RDONLY);
    if (fd < 0)
        return 0;
    struct stat st;
    int own = 0;
    if (fstat(fd, &st) == 0 && (uint64_t)st.st_size >= sizeof(struct st_file_header)) {
        void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (map != MAP_FAILED) {
            const struct st_file_header *h = map;
            const uint64_t size = (uint64_t)st.st_size;
            own = memcmp(h->magic, ST_MAGIC, 8) == 0 && h->version == ST_FORMAT_VERSION &&
                  h->file_size == size && !(h->flags & ST_FLAG_COMPLETE) &&
                  h->ring_records == 0 && h->process_offset + sizeof(struct st_process) <= size &&
                  ((const struct st_process *)((const char *)map + h->process_offset))->pid ==
                      getpid() &&
                  owned_by_self(h) && !has_loop_thread(h, size);
            munmap(map, (size_t)st.st_size);
        }
    }
    syscall(SYS_close, fd);
    return own;
}

/* The directory part of path ("." for none) into dir. */
static void dir_of(const char *path, char *dir, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        put_str(dir, cap, 0, ".");
    } else {
        size_t n = (size_t)(slash - path) + 1 < cap ? (size_t)(slash - path) + 1 : cap - 1;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
}

/* A new file in path's directory that has no name yet (O_TMPFILE), or, where
 * the file system has no such thing, a hidden temporary name (*tmp). */
static int create_unnamed(const char *path, char *tmp, size_t cap)
{
    char dir[4096 + 32];
    dir_of(path, dir, sizeof dir);
    tmp[0] = '\0';
    int fd = (int)syscall(SYS_openat, AT_FDCWD, dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
    for (unsigned attempt = 0; attempt < 100; attempt++) {
        size_t n = put_str(tmp, cap, 0, dir);
        if (strcmp(dir, ".") == 0)
            n = put_str(tmp, cap, 0, "");
        n = put_str(tmp, cap, n, ".stalltrace-");
        n = put_uint(tmp, cap, n, (uint64_t)getpid());
        n = put_str(tmp, cap, n, "-");
        n = put_uint(tmp, cap, n, (st_clock_read_ns(CLOCK_MONOTONIC) ^ attempt) % 1000000u);
        put_str(tmp, cap, n, ".tmp");
        fd = (int)syscall(SYS_openat, AT_FDCWD, tmp,
                          O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0 || errno != EEXIST)
            break;
    }
    if (fd < 0)
        tmp[0] = '\0';
    return fd;
}

/* Give the file (fd, made by create_unnamed) the name `name`; fails with
 * EEXIST if the name is taken. */
static int link_as(int fd, const char *tmp, const char *name)
{
    if (tmp[0])
        return (int)syscall(SYS_linkat, AT_FDCWD, tmp, AT_FDCWD, name, 0);
    char self[40];
    size_t n = put_str(self, sizeof self, 0, "/proc/self/fd/");
    put_uint(self, sizeof self, n, (uint64_t)fd);
    int r = (int)syscall(SYS_linkat, AT_FDCWD, self, AT_FDCWD, name, AT_SYMLINK_FOLLOW);
    if (r < 0 && errno == ENOENT)     /* no /proc: needs CAP_DAC_READ_SEARCH */
        r = (int)syscall(SYS_linkat, fd, "", AT_FDCWD, name, AT_EMPTY_PATH);
    return r;
}

/* Never write through an existing file or a symlink: pick "NAME.1.dump", ... */
static int publish(int fd, const char *tmp, const char *path, char *chosen, size_t cap)
{
    size_t stem = st_dumpname_stem(path, strlen(path));
    for (unsigned attempt = 0; attempt < ST_DUMPNAME_ATTEMPTS; attempt++) {
        size_t n = put_str(chosen, cap, 0, path);
        if (attempt > 0) {
            n = stem < cap ? stem : n;
            n = put_str(chosen, cap, n, ".");
            n = put_uint(chosen, cap, n, attempt);
            put_str(chosen, cap, n, path + stem);
        }
        int r = link_as(fd, tmp, chosen);
        if (r < 0 && errno == EEXIST) {
            if (is_own_empty_dump(chosen) && syscall(SYS_unlink, chosen) == 0)
                r = link_as(fd, tmp, chosen);
            else
                errno = EEXIST;    /* taken: try the next name */
        }
        if (r == 0 || errno != EEXIST)
            return r;
    }
    return -1;
}

/* /proc/self/cmdline: NUL-terminated strings, cut to fit; returns its length. */
static uint32_t read_cmdline(char *buf, size_t cap, uint32_t *argc)
{
    *argc = 0;
    int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = syscall(SYS_read, fd, buf, cap - 1);
    syscall(SYS_close, fd);
    if (n <= 0)
        return 0;
    if (buf[n - 1] != '\0')
        buf[n++] = '\0';      /* cut mid-string: terminate what we kept */
    for (ssize_t i = 0; i < n; i++)
        *argc += buf[i] == '\0';
    return (uint32_t)n;
}

static void fill_process(struct st_process *proc, int forked_from)
{
    proc->pid = getpid();
    proc->parent_pid = forked_from ? forked_from : getppid();
    ssize_t k = readlink("/proc/self/exe", proc->exe, sizeof proc->exe - 1);
    proc->exe[k > 0 ? k : 0] = '\0';
    proc->argv_len = read_cmdline(proc->argv, sizeof proc->argv, &proc->argc);
}

/* A forked child that renamed itself (setproctitle: "nginx: worker
 * process") is titled as it ended, not with its parent's argv. A process
 * that exec'd keeps the argv it was run with, which names its frames
 * (redis-server retitles itself "redis-server HOST:PORT"). */
static void refresh_title(struct st_process *proc)
{
    char now[ST_ARGV_MAX];
    uint32_t argc, len = read_cmdline(now, sizeof now, &argc);
    while (len >= 2 && now[len - 1] == '\0' && now[len - 2] == '\0')
        len--, argc--;            /* the zeroed rest of an overwritten argv area */
    if (len == 0 || (len == proc->argv_len && memcmp(now, proc->argv, len) == 0))
        return;
    __atomic_store_n(&proc->argv_len, 0, __ATOMIC_RELEASE);   /* a reader sees none, not a mix */
    memcpy(proc->argv, now, len);
    proc->argc = argc;
    __atomic_store_n(&proc->argv_len, len, __ATOMIC_RELEASE);
}

/* A descriptor that is still our dump: the program may have closed ours and
 * reused its number. */
static int is_dump_fd(int fd)
{
    struct stat st;
    return fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == dump_dev && st.st_ino == dump_ino;
}

/* Mapped again through its name, the same pages, so that /proc/PID/maps
 * shows where the dump is (`stalltrace top PID`), not "/dir/#ino (deleted)". */
static void map_by_name(void *map, uint64_t size)
{
    int fd = (int)syscall(SYS_openat, AT_FDCWD, st_rec.dump_path,
                          O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return;
    if (is_dump_fd(fd))
        mmap(map, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
    syscall(SYS_close, fd);
}

/* What the recorder may map beside its dump: the watchdog's stack, the
 * buffers it allocates at exit. */
#define ST_AS_ALLOWANCE ((uint64_t)512 << 10)
#define ST_AS_MIN_RING ((uint64_t)256 << 10)
#define ST_AS_SHARE 16    /* the recorder takes at most 1/16 of what is left */

/* Bytes of address space the recorder may take: UINT64_MAX without a
 * limit, 0 when the process is already at it or its size is unknown. */
static uint64_t address_space_share(void)
{
    struct rlimit as;
    if (getrlimit(RLIMIT_AS, &as) != 0 || as.rlim_cur == RLIM_INFINITY)
        return UINT64_MAX;
    char buf[128];
    if (read_proc("/proc/self/statm", buf, sizeof buf) <= 0 || buf[0] < '0' || buf[0] > '9')
        return 0;
    uint64_t pages = parse_digits(buf);
    uint64_t used = pages * (uint64_t)sysconf(_SC_PAGESIZE);
    return used < as.rlim_cur ? (as.rlim_cur - used) / ST_AS_SHARE : 0;
}

int st_dump_create(const struct st_config *cfg, int forked_from)
{
    uint64_t ring_size = 1u << 20;
    while (ring_size * 2 <= cfg->buffer_bytes)
        ring_size *= 2;

    uint64_t off = align_up(sizeof(struct st_file_header), ST_SECTION_ALIGN);
    uint64_t process_off = off;
    off = align_up(off + sizeof(struct st_process), ST_SECTION_ALIGN);
    uint64_t modules_off = off;
    off = align_up(off + (uint64_t)ST_MODULE_CAPACITY * sizeof(struct st_module), ST_SECTION_ALIGN);
    uint64_t threads_off = off;
    off = align_up(off + (uint64_t)ST_THREAD_CAPACITY * sizeof(struct st_thread), ST_SECTION_ALIGN);
    uint64_t objects_off = off;
    off = align_up(off + (uint64_t)ST_OBJECT_CAPACITY * sizeof(struct st_object), ST_SECTION_ALIGN);
    uint64_t queues_off = off;
    off = align_up(off + (uint64_t)ST_QUEUE_CAPACITY * sizeof(struct st_queue), 4096);
    uint64_t ring_off = off;

    /* Under an address-space limit (ulimit -v) the recorder takes a small
     * share of what is left, its ring shrunk to fit, or nothing at all. */
    uint64_t as_share = address_space_share();
    while (ring_off + ring_size + ST_AS_ALLOWANCE > as_share && ring_size > ST_AS_MIN_RING)
        ring_size /= 2;
    if (ring_off + ring_size + ST_AS_ALLOWANCE > as_share) {
        st_warn("the address-space limit (ulimit -v) leaves no room for the recorder, not recording", "");
        return -1;
    }
    uint64_t file_size = ring_off + ring_size;

    /* Growing a file past RLIMIT_FSIZE raises SIGXFSZ, which kills. */
    struct rlimit fsize;
    if (getrlimit(RLIMIT_FSIZE, &fsize) == 0 && fsize.rlim_cur != RLIM_INFINITY &&
        fsize.rlim_cur < file_size) {
        st_warn("the file size limit (ulimit -f) is below the dump's size, not recording", "");
        return -1;
    }

    /* The file gets its name only once its header is written: a process
     * killed while starting leaves nothing a reader would reject. */
    char path[4096 + 32], chosen[4096 + 32], tmp[4096 + 64];
    expand_output(cfg->output, path, sizeof path);
    read_owner(&self_owner);
    int fd = create_unnamed(path, tmp, sizeof tmp);
    if (fd < 0) {
        st_warn("cannot create the dump file, not recording: ", path);
        return -1;
    }
    int err = posix_fallocate(fd, 0, (off_t)file_size);
    if (err == EOPNOTSUPP || err == ENOSYS)
        err = ftruncate(fd, (off_t)file_size) == 0 ? 0 : errno;
    struct stat st;
    void *map = err || fstat(fd, &st) != 0
                    ? MAP_FAILED
                    : mmap(NULL, file_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        st_warn("cannot allocate or map the dump file (disk full?), not recording: ", path);
        if (tmp[0])
            syscall(SYS_unlink, tmp);
        syscall(SYS_close, fd);
        return -1;
    }
    dump_dev = st.st_dev;
    dump_ino = st.st_ino;
    st_rec.dump_fd = -1;
    st_rec.map = map;
    st_rec.map_size = file_size;
    st_rec.hdr = map;
    st_rec.proc = (struct st_process *)((char *)map + process_off);
    st_rec.modules = (struct st_module *)((char *)map + modules_off);
    st_rec.threads = (struct st_thread *)((char *)map + threads_off);
    st_rec.ring.base = (uint8_t *)map + ring_off;
    st_rec.objects.table = (struct st_object *)((char *)map + objects_off);
    st_rec.objects.capacity = ST_OBJECT_CAPACITY;
    st_queues.table = (struct st_queue *)((char *)map + queues_off);
    st_queues.capacity = ST_QUEUE_CAPACITY;
    st_queues.count = &st_rec.hdr->queue_count;
    st_queues.untracked = &st_rec.hdr->queues_untracked;
    st_rec.ring.size = ring_size;

    struct st_file_header *h = st_rec.hdr;
    memcpy(h->magic, ST_MAGIC, 8);
    h->version = ST_FORMAT_VERSION;
    h->endian = ST_ENDIAN_MARK;
    h->header_size = sizeof *h;
    h->file_size = file_size;
    h->process_offset = process_off;
    h->process_size = sizeof(struct st_process);
    h->modules_offset = modules_off;
    h->module_size = sizeof(struct st_module);
    h->module_capacity = ST_MODULE_CAPACITY;
    h->threads_offset = threads_off;
    h->thread_size = sizeof(struct st_thread);
    h->thread_capacity = ST_THREAD_CAPACITY;
    h->objects_offset = objects_off;
    h->object_size = sizeof(struct st_object);
    h->object_capacity = ST_OBJECT_CAPACITY;
    h->queues_offset = queues_off;
    h->queue_size = sizeof(struct st_queue);
    h->queue_capacity = ST_QUEUE_CAPACITY;
    h->ring_offset = ring_off;
    h->ring_size = ring_size;
    h->start_mono_ns = st_rec.start_mono_ns;
    h->start_real_ns = st_clock_read_ns(CLOCK_REALTIME);
    h->threshold_ns = st_rec.threshold_ns;
    h->sample_interval_ns = st_rec.sample_interval_ns;
    h->sample_signal = st_rec.sample_signal;
    h->flags = forked_from ? ST_FLAG_FORKED_CHILD : 0;
    put_str(h->recorder_version, sizeof h->recorder_version, 0, "stalltrace " STALLTRACE_VERSION);
    put_str(h->unwinder, sizeof h->unwinder, 0, "libunwind");
    st_rec.ring.head = &h->ring_head;
    st_rec.objects.count = &h->object_count;
    st_rec.objects.untracked = &h->objects_untracked;
    st_rec.ring.records = &h->ring_records;
    st_rec.ring.hdr = h;
    h->owner_pidns = self_owner.pidns;
    h->owner_start_ticks = self_owner.start_ticks;
    memcpy(h->owner_boot_id, self_owner.boot_id, sizeof h->owner_boot_id);
    fill_process(st_rec.proc, forked_from);

    int named = publish(fd, tmp, path, chosen, sizeof chosen);
    if (tmp[0])
        syscall(SYS_unlink, tmp);
    syscall(SYS_close, fd);      /* the mapping keeps the file; no fd lingers in the target */
    if (named != 0) {
        st_warn("cannot create the dump file, not recording: ", path);
        st_dump_abandon();
        st_queues.table = NULL;
        st_queues.capacity = 0;
        return -1;
    }
    put_str(st_rec.dump_path, sizeof st_rec.dump_path, 0, chosen);
    map_by_name(map, file_size);
    return 0;
}

/* Nothing to report: no loop, no event, no thread ever blocked on a lock. Shells and helpers a service
 * spawns would otherwise leave a pile of empty dumps behind. */
static int dump_is_empty(void)
{
    struct st_file_header *h = st_rec.hdr;
    if (__atomic_load_n(&h->ring_records, __ATOMIC_ACQUIRE) != 0 || h->object_count != 0 ||
        h->queue_count != 0)
        return 0;
    for (uint32_t i = 0; i < h->thread_count && i < h->thread_capacity; i++)
        if (st_rec.threads[i].tid != 0 && (st_rec.threads[i].flags & ST_THREAD_LOOP))
            return 0;
    return 1;
}

static int reopen_dump(void)
{
    int fd = st_open_own_regular(st_rec.dump_path, O_RDWR);
    if (fd >= 0 && !is_dump_fd(fd)) {
        syscall(SYS_close, fd);
        fd = -1;
    }
    return fd;
}

void st_dump_hold(void)
{
    if (st_rec.hdr != NULL && !is_dump_fd(st_rec.dump_fd))
        st_rec.dump_fd = reopen_dump();
}

static int put_at(int fd, const void *src, uint64_t n, uint64_t off)
{
    const char *p = src;
    while (n > 0) {
        ssize_t k = syscall(SYS_pwrite64, fd, p, n, off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k, n -= (uint64_t)k, off += (uint64_t)k;
    }
    return 0;
}

/* The ring's bytes worth keeping: all of it once it wrapped, else the
 * smallest power of two that holds what was written. */
static uint64_t ring_kept(uint64_t head, uint64_t size)
{
    if (head > size)
        return size;
    uint64_t ring = 4096;
    while (ring < head)
        ring *= 2;
    return ring < size ? ring : size;
}

/* The table slots in use, packed: objects are found by scanning, so order
 * does not matter; queue slots are named by index in records, kept as is. */
static int put_objects(int fd, uint64_t off, uint32_t *count)
{
    struct st_object batch[16];
    uint32_t n = 0, total = 0;
    for (uint32_t i = 0; i < st_rec.objects.capacity; i++) {
        if (__atomic_load_n(&st_rec.objects.table[i].addr, __ATOMIC_ACQUIRE) == 0)
            continue;
        batch[n++] = st_rec.objects.table[i];
        if (n == 16 || i + 1 == st_rec.objects.capacity) {
            if (put_at(fd, batch, n * sizeof batch[0], off + (uint64_t)total * sizeof batch[0]))
                return -1;
            total += n, n = 0;
        }
    }
    if (n && put_at(fd, batch, n * sizeof batch[0], off + (uint64_t)total * sizeof batch[0]))
        return -1;
    *count = total + n;
    return 0;
}

static uint32_t objects_used(void)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < st_rec.objects.capacity; i++)
        n += __atomic_load_n(&st_rec.objects.table[i].addr, __ATOMIC_ACQUIRE) != 0;
    return n;
}

static uint32_t queues_used(void)
{
    uint32_t last = 0;
    for (uint32_t i = 0; i < st_queues.capacity; i++)
        if (st_queues.table[i].name_hash != 0)
            last = i + 1;
    return last;
}

/* Write what the live dump holds, compactly, into a new file (unnamed until
 * complete) and rename it over the dump. The live file keeps its whole ring
 * until then, so a crash at any point leaves one readable dump; threads
 * still running write on into the old, unlinked file. */
static int compact_copy(void)
{
    const struct st_file_header *live = st_rec.hdr;
    struct st_file_header h;
    memcpy(&h, live, sizeof h);
    h.ring_head = __atomic_load_n(&live->ring_head, __ATOMIC_ACQUIRE);
    h.ring_records = __atomic_load_n(&live->ring_records, __ATOMIC_ACQUIRE);
    h.module_count = h.module_count < h.module_capacity ? h.module_count : h.module_capacity;
    h.thread_count = h.thread_count < h.thread_capacity ? h.thread_count : h.thread_capacity;
    h.module_capacity = h.module_count;
    h.thread_capacity = h.thread_count;
    h.object_capacity = h.object_count = objects_used();
    h.queue_capacity = queues_used();
    h.ring_size = ring_kept(h.ring_head, live->ring_size);

    uint64_t off = align_up(sizeof h, ST_SECTION_ALIGN);
    h.process_offset = off;
    off = align_up(off + h.process_size, ST_SECTION_ALIGN);
    h.modules_offset = off;
    off = align_up(off + (uint64_t)h.module_capacity * h.module_size, ST_SECTION_ALIGN);
    h.threads_offset = off;
    off = align_up(off + (uint64_t)h.thread_capacity * h.thread_size, ST_SECTION_ALIGN);
    h.objects_offset = off;
    off = align_up(off + (uint64_t)h.object_capacity * h.object_size, ST_SECTION_ALIGN);
    h.queues_offset = h.queue_capacity ? off : 0;
    off = align_up(off + (uint64_t)h.queue_capacity * h.queue_size, ST_SECTION_ALIGN);
    h.ring_offset = off;
    h.file_size = off + h.ring_size;
    if (h.file_size >= live->file_size)
        return 0;

    char tmp[4096 + 64];
    int fd = create_unnamed(st_rec.dump_path, tmp, sizeof tmp);
    if (fd < 0)
        return -1;
    uint32_t objects = 0;
    const char *base = (const char *)live;
    /* Allocated first: on a full disk this fails here, not halfway. */
    int ok = posix_fallocate(fd, 0, (off_t)h.file_size) == 0 &&
             put_at(fd, st_rec.proc, h.process_size, h.process_offset) == 0 &&
             put_at(fd, st_rec.modules, (uint64_t)h.module_capacity * h.module_size,
                    h.modules_offset) == 0 &&
             put_at(fd, st_rec.threads, (uint64_t)h.thread_capacity * h.thread_size,
                    h.threads_offset) == 0 &&
             put_objects(fd, h.objects_offset, &objects) == 0 && objects <= h.object_capacity &&
             put_at(fd, st_queues.table, (uint64_t)h.queue_capacity * h.queue_size,
                    h.queues_offset) == 0 &&
             put_at(fd, base + live->ring_offset,
                    h.ring_head < h.ring_size ? h.ring_head : h.ring_size, h.ring_offset) == 0;
    h.object_count = objects;
    ok = ok && put_at(fd, &h, sizeof h, 0) == 0;

    /* Named under a temporary name, then renamed over the dump if the dump
     * is still the file we made. */
    char dir[4096 + 32], name[4096 + 64];
    dir_of(st_rec.dump_path, dir, sizeof dir);
    if (ok && !tmp[0]) {
        ok = 0;
        for (unsigned attempt = 0; attempt < 100 && !ok; attempt++) {
            size_t n = put_str(name, sizeof name, 0, st_rec.dump_path);
            n = put_str(name, sizeof name, n, ".compact");
            put_uint(name, sizeof name, n, attempt);
            ok = link_as(fd, "", name) == 0;
            if (!ok && errno != EEXIST)
                break;
        }
        if (ok)
            put_str(tmp, sizeof tmp, 0, name);
    }
    struct stat st;
    ok = ok && fstatat(AT_FDCWD, st_rec.dump_path, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
         st.st_dev == dump_dev && st.st_ino == dump_ino &&
         syscall(SYS_renameat, AT_FDCWD, tmp, AT_FDCWD, st_rec.dump_path) == 0;
    if (!ok && tmp[0])
        syscall(SYS_unlink, tmp);
    syscall(SYS_close, fd);
    return ok ? 0 : -1;
}

/* Where no new file can be made (the process gave up the rights to the dump
 * directory), shrink the ring in place through the descriptor kept. Late
 * writers past the new end land in anonymous memory, never in a page the
 * file no longer has (SIGBUS); their records count as dropped. */
static void compact_in_place(void)
{
    struct st_file_header *h = st_rec.hdr;
    uint64_t ring = ring_kept(__atomic_load_n(&h->ring_head, __ATOMIC_ACQUIRE), h->ring_size);
    if (ring >= h->ring_size)
        return;
    int fd = is_dump_fd(st_rec.dump_fd) ? st_rec.dump_fd : reopen_dump();
    if (fd < 0)
        return;
    uint64_t size = h->ring_offset + ring, old = h->file_size;
    if (mmap((char *)st_rec.map + size, st_rec.map_size - size, PROT_READ | PROT_WRITE,
             MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != MAP_FAILED) {
        __atomic_store_n(&h->ring_size, ring, __ATOMIC_RELEASE);
        __atomic_store_n(&h->file_size, size, __ATOMIC_RELEASE);
        if (syscall(SYS_ftruncate, fd, size) != 0)
            __atomic_store_n(&h->file_size, old, __ATOMIC_RELEASE);
    }
    if (fd != st_rec.dump_fd)
        syscall(SYS_close, fd);
}

void st_dump_finish(uint32_t end_reason, int end_signal)
{
    struct st_file_header *h = st_rec.hdr;
    if (h == NULL)
        return;
    /* Not a vforked child running on our memory: only the process itself
     * retitles or rewrites its dump. */
    int self = getpid() == st_rec.proc_pid;
    /* An empty dump is no news for a program run, but `attach` was asked for
     * this one: that nothing happened is its answer. */
    if (dump_is_empty() && !(h->flags & ST_FLAG_ATTACHED)) {
        syscall(SYS_unlink, st_rec.dump_path);
        if (self && end_reason == ST_END_EXIT)
            st_jitmap_remove_requested();
        return;
    }
    if (end_reason == ST_END_EXIT) {
        int saved_errno = st_recorder_enter(&st_tls);
        st_jitmap_copy();
        st_code_copies_note(1);
        if (self)
            st_jitmap_remove_requested();    /* the dump holds what it needs of them */
        st_recorder_leave(&st_tls, saved_errno);
    }
    if (self && (h->flags & ST_FLAG_FORKED_CHILD))
        refresh_title(st_rec.proc);
    h->last_update_ns = st_now_ns();
    h->end_reason = end_reason;
    h->end_signal = end_signal;
    __atomic_fetch_or(&h->flags, ST_FLAG_COMPLETE, __ATOMIC_RELEASE);
    /* Detached, the process runs on: threads still in a wrapper write on
     * into the old file, as at exit. */
    if (self && (end_reason == ST_END_EXIT || end_reason == ST_END_DETACHED)) {
        int saved_errno = errno;
        if (compact_copy() != 0)
            compact_in_place();
        errno = saved_errno;
    }
}

/* Drop the mapping without touching the file: a forked child must not write
 * into its parent's dump. */
void st_dump_abandon(void)
{
    if (st_rec.map != NULL)
        munmap(st_rec.map, st_rec.map_size);
    if (is_dump_fd(st_rec.dump_fd))
        syscall(SYS_close, st_rec.dump_fd);
    st_rec.map = NULL;
    st_rec.hdr = NULL;
    st_rec.proc = NULL;
    st_rec.modules = NULL;
    st_rec.threads = NULL;
    st_rec.ring.base = NULL;
    st_rec.objects.table = NULL;
    st_rec.dump_fd = -1;
}

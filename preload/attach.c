/* attach.c - the recorder when `stalltrace attach` dlopen'ed it: its settings
 * file, the GOT slots it takes over and gives back, and the detach request it polls. */
#include <dirent.h>
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "procstat.h"
#include "recorder.h"
#include "stalltrace/attach.h"

#define MAX_SLOTS 8192

struct slot {
    uintptr_t *addr;
    uintptr_t old, wrapper;
    uintptr_t bias;         /* of its module: one dlclose'd since is not written to */
    uint8_t read_only;      /* in a RELRO page: made writable for the store */
};

static struct slot slots[MAX_SLOTS];
static unsigned nslots;
static void *libc_handle, *self_handle;
static uintptr_t self_lo, self_hi;
static double duration_s;
/* libunwind's address-check pipe, opened on its first use: ours to close at
 * detach, so the program's fds are as before. */
#define FD_SCAN 1024
static int unwinder_fds[2] = {-1, -1};

void *st_attach_libc(void)
{
    return libc_handle;
}

/* Opens a request file only if it is the attaching user's: a regular file of
 * our euid or root's, readable by nobody else. */
static int open_trusted(const char *fmt)
{
    char path[64];
    snprintf(path, sizeof path, fmt, (int)getpid());
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) ||
        (st.st_uid != geteuid() && st.st_uid != 0)) {
        close(fd);
        return -1;
    }
    unlink(path);
    return fd;
}

/* The in-stall sampling signal: a real-time signal the program does not
 * use, as far as can be seen: its disposition is SIG_DFL (so a program that
 * sent it would kill itself) and no thread blocks it (as sigwaitinfo's
 * users do) or has it pending. The program's own sigaction or signal on it
 * later goes through our wrappers (its GOT), and sampling steps aside as
 * under the preload. Detach puts the disposition back as it was. */
static int sample_sig;
static struct sigaction sample_sig_old;

/* Whether no thread has sig pending and, if blocked_too, none
 * blocks it on its own: a thread blocking every real-time signal (a blanket
 * mask, as jemalloc's and many a worker's) does not wait for this one. */
static int quiet_everywhere(int sig, int blocked_too)
{
    DIR *dir = opendir("/proc/self/task");
    if (dir == NULL)
        return 0;
    uint64_t bit = 1ull << (sig - 1), rt = 0;
    for (int s = SIGRTMIN; s <= SIGRTMAX; s++)
        rt |= 1ull << (s - 1);
    int quiet = 1;
    for (struct dirent *e; quiet && (e = readdir(dir)) != NULL;) {
        uint32_t tid = (uint32_t)atoi(e->d_name);
        uint64_t blocked, pending;
        if (tid == 0)
            continue;
        if (st_thread_signal_masks(tid, &blocked, &pending) != 0)
            continue;              /* gone meanwhile */
        quiet = !(pending & bit) && !(blocked_too && (blocked & bit) && (blocked & rt) != rt);
    }
    closedir(dir);
    return quiet;
}

static int pick_sample_signal(void)
{
    for (int sig = SIGRTMAX - 4; sig >= SIGRTMIN + 2; sig--) {
        struct sigaction old;
        if (sigaction(sig, NULL, &old) == 0 && !(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_DFL &&
            quiet_everywhere(sig, 1)) {
            sample_sig = sig;
            sample_sig_old = old;
            return sig;
        }
    }
    return 0;
}

/* After the watchdog stopped: once no sample is pending anywhere, the
 * program's disposition again; a sample still pending (a thread that blocked
 * the signal since) keeps our handler, which does nothing from now on,
 * rather than let SIG_DFL kill the process. */
static void give_back_signal(void)
{
    if (sample_sig == 0 || !st_watchdog_owns_signal(sample_sig))
        return;                    /* the program took it for itself meanwhile */
    for (int i = 0; i < 500 && !quiet_everywhere(sample_sig, 0); i++) {
        struct timespec t = {0, 1000000};
        syscall(SYS_nanosleep, &t, NULL);
    }
    if (quiet_everywhere(sample_sig, 0)) {
        int saved_errno = st_recorder_enter(&st_tls);
        sigaction(sample_sig, &sample_sig_old, NULL);
        st_recorder_leave(&st_tls, saved_errno);
    }
}

int st_attach_config(struct st_config *cfg)
{
    int fd = open_trusted(ST_ATTACH_CONF_FMT);
    if (fd < 0)
        return -1;
    char buf[4096 + 256];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    st_config_read(cfg);           /* the defaults; the file says the rest */
    cfg->disabled = 0;
    cfg->sample_signal = pick_sample_signal();
    cfg->follow_fork = 0;
    for (char *line = buf, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        size_t ko = strlen(ST_ATTACH_KEY_OUTPUT), kt = strlen(ST_ATTACH_KEY_THRESHOLD);
        size_t kd = strlen(ST_ATTACH_KEY_DURATION);
        if (strncmp(line, ST_ATTACH_KEY_OUTPUT, ko) == 0 && strlen(line + ko) < sizeof cfg->output - 16)
            strcpy(cfg->output, line + ko);
        else if (strncmp(line, ST_ATTACH_KEY_THRESHOLD, kt) == 0 && atof(line + kt) > 0)
            cfg->threshold_ns = (uint64_t)(atof(line + kt) * 1e6);
        else if (strncmp(line, ST_ATTACH_KEY_DURATION, kd) == 0)
            duration_s = atof(line + kd);
    }
    libc_handle = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    Dl_info info;
    if (libc_handle == NULL || dladdr((void *)st_attach_config, &info) == 0)
        return -1;
    self_handle = dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD);
    return self_handle ? 0 : -1;
}

static void store_slot(uintptr_t *addr, uintptr_t value, int read_only)
{
    long page = sysconf(_SC_PAGESIZE);
    void *p = (void *)((uintptr_t)addr & ~(uintptr_t)(page - 1));
    if (read_only && mprotect(p, (size_t)page, PROT_READ | PROT_WRITE) != 0)
        return;
    __atomic_store_n(addr, value, __ATOMIC_RELEASE);
    if (read_only)
        mprotect(p, (size_t)page, PROT_READ);
}

static uintptr_t dyn_ptr(uintptr_t v, uintptr_t bias)
{
    return v < bias ? v + bias : v;     /* glibc relocates .dynamic in place, the vdso's stays */
}

/* Our wrapper for name, if we wrap it and libc defines it. */
static uintptr_t wrapper_for(const char *name, uintptr_t *real)
{
    void *w = dlsym(self_handle, name);
    if (w == NULL || (uintptr_t)w < self_lo || (uintptr_t)w >= self_hi)
        return 0;
    void *r = dlsym(libc_handle, name);
    if (r == NULL)
        return 0;
    *real = (uintptr_t)r;
    return (uintptr_t)w;
}

static void patch_relocs(const ElfW(Rela) *rel, size_t bytes, const ElfW(Sym) *symtab, const char *strtab,
                         uintptr_t bias, uintptr_t lo, uintptr_t hi, uintptr_t ro_lo, uintptr_t ro_hi)
{
    for (size_t i = 0; i < bytes / sizeof *rel && nslots < MAX_SLOTS; i++) {
        unsigned type = ELF64_R_TYPE(rel[i].r_info);
        if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT)
            continue;
        const ElfW(Sym) *sym = &symtab[ELF64_R_SYM(rel[i].r_info)];
        if (sym->st_name == 0 || sym->st_shndx != SHN_UNDEF)
            continue;
        uintptr_t real, w = wrapper_for(strtab + sym->st_name, &real);
        if (w == 0)
            continue;
        uintptr_t *addr = (uintptr_t *)(bias + rel[i].r_offset);
        uintptr_t old = __atomic_load_n(addr, __ATOMIC_ACQUIRE);
        /* Bound to libc, or not bound yet (its own lazy PLT stub); anything
         * else is someone else's interposer: left alone. */
        if (old != real && !(old >= lo && old < hi))
            continue;
        int ro = (uintptr_t)addr >= ro_lo && (uintptr_t)addr < ro_hi;
        slots[nslots++] = (struct slot){addr, old, w, bias, (uint8_t)ro};
        store_slot(addr, w, ro);
    }
}

/* Modules seen so far, by load bias: a later pass patches only new ones. */
#define MAX_MODULES 1024
static uintptr_t seen_bias[MAX_MODULES];
static unsigned nseen;
static unsigned long long seen_adds;

static int seen(uintptr_t bias)
{
    for (unsigned i = 0; i < nseen; i++)
        if (seen_bias[i] == bias)
            return 1;
    return 0;
}

/* Is name one of the lines of list? */
static int in_list(const char *list, const char *name)
{
    size_t len = strlen(name);
    for (const char *l = list; len && *l; l = strchr(l, '\n') + 1)
        if (strncmp(l, name, len) == 0 && l[len] == '\n')
            return 1;
    return 0;
}

static int patch_module(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    if (seen(info->dlpi_addr) || nseen >= MAX_MODULES)
        return 0;
    /* A later pass patches only the modules the loader has finished (data: their names). */
    if (data != NULL && !in_list(data, info->dlpi_name))
        return 0;
    seen_bias[nseen++] = info->dlpi_addr;
    seen_adds = info->dlpi_adds;
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
    if (strncmp(base, "libc.so", 7) == 0 || strncmp(base, "ld-linux", 8) == 0 ||
        strncmp(base, "linux-vdso", 10) == 0 || strncmp(base, "libunwind", 9) == 0)
        return 0;
    uintptr_t bias = info->dlpi_addr, lo = UINTPTR_MAX, hi = 0, ro_lo = 0, ro_hi = 0;
    const ElfW(Dyn) *dyn = NULL;
    long page = sysconf(_SC_PAGESIZE);
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD) {
            lo = bias + ph->p_vaddr < lo ? bias + ph->p_vaddr : lo;
            hi = bias + ph->p_vaddr + ph->p_memsz > hi ? bias + ph->p_vaddr + ph->p_memsz : hi;
        } else if (ph->p_type == PT_DYNAMIC) {
            dyn = (const ElfW(Dyn) *)(bias + ph->p_vaddr);
        } else if (ph->p_type == PT_GNU_RELRO) {
            ro_lo = bias + ph->p_vaddr;
            ro_hi = (bias + ph->p_vaddr + ph->p_memsz) & ~(uintptr_t)(page - 1);
        }
    }
    if (dyn == NULL || ((uintptr_t)st_attach_config >= lo && (uintptr_t)st_attach_config < hi))
        return 0;                 /* ourselves */
    const ElfW(Sym) *symtab = NULL;
    const char *strtab = NULL;
    const ElfW(Rela) *jmprel = NULL, *rela = NULL;
    size_t jmpsz = 0, relasz = 0;
    for (const ElfW(Dyn) *d = dyn; d->d_tag != DT_NULL; d++) {
        switch (d->d_tag) {
        case DT_SYMTAB: symtab = (const ElfW(Sym) *)dyn_ptr(d->d_un.d_ptr, bias); break;
        case DT_STRTAB: strtab = (const char *)dyn_ptr(d->d_un.d_ptr, bias); break;
        case DT_JMPREL: jmprel = (const ElfW(Rela) *)dyn_ptr(d->d_un.d_ptr, bias); break;
        case DT_PLTRELSZ: jmpsz = d->d_un.d_val; break;
        case DT_RELA: rela = (const ElfW(Rela) *)dyn_ptr(d->d_un.d_ptr, bias); break;
        case DT_RELASZ: relasz = d->d_un.d_val; break;
        default: break;
        }
    }
    if (symtab == NULL || strtab == NULL)
        return 0;
    if (jmprel)
        patch_relocs(jmprel, jmpsz, symtab, strtab, bias, lo, hi, ro_lo, ro_hi);
    if (rela)
        patch_relocs(rela, relasz, symtab, strtab, bias, lo, hi, ro_lo, ro_hi);
    return 0;
}

static void open_fds(uint8_t *set)
{
    for (int fd = 0; fd < FD_SCAN; fd++)
        set[fd] = fcntl(fd, F_GETFD) >= 0;
}

/* Warms the unwinder now (its pipe, its cache) and notes the pipe it made:
 * a FIFO pair that was not there before. */
static void warm_unwinder(void)
{
    static uint8_t before[FD_SCAN], after[FD_SCAN];
    open_fds(before);
    st_stack_warm_up();
    open_fds(after);
    int n = 0;
    for (int fd = 0; fd < FD_SCAN && n < 2; fd++) {
        struct stat st;
        if (after[fd] && !before[fd] && fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode))
            unwinder_fds[n++] = fd;
    }
    if (n != 2)
        unwinder_fds[0] = unwinder_fds[1] = -1;
}

/* Gives back the slots of one module still loaded, those still ours. */
static int unpatch_module(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size, (void)data;
    for (int p = 0; p < info->dlpi_phnum; p++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[p];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
        for (unsigned i = 0; i < nslots; i++) {
            struct slot *s = &slots[i];
            if (s->bias == info->dlpi_addr && (uintptr_t)s->addr >= lo && (uintptr_t)s->addr < hi &&
                __atomic_load_n(s->addr, __ATOMIC_ACQUIRE) == s->wrapper)
                store_slot(s->addr, s->old, s->read_only);
        }
    }
    return 0;
}

static void unpatch_all(void)
{
    dl_iterate_phdr(unpatch_module, NULL);
    nslots = 0;
}

static void detach(void)
{
    unpatch_all();                 /* from here on, new calls go straight to libc */
    /* An iteration under way is cut by detach, not ended by the program:
     * not a stall of the recording (it has neither its length nor a stack). */
    for (uint32_t i = 0; i < st_rec.hdr->thread_capacity; i++)
        __atomic_store_n(&st_rec.threads[i].live_iter_start_ns, 0, __ATOMIC_RELEASE);
    st_recorder_stop(ST_END_DETACHED);
    give_back_signal();
    /* A wrapper entered before detach may still walk its stack through the
     * pipe: it is closed only when none does (else left open, never reused
     * under a walk). */
    if (st_stack_quiesce() != 0)
        return;
    for (int i = 0; i < 2; i++)
        if (unwinder_fds[i] >= 0)
            close(unwinder_fds[i]);
    unwinder_fds[0] = unwinder_fds[1] = -1;
}

static int list_new(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    char *names = data;
    size_t used = strlen(names), len = strlen(info->dlpi_name);
    if (!seen(info->dlpi_addr) && len && used + len + 2 < 65536) {
        memcpy(names + used, info->dlpi_name, len);
        names[used + len] = '\n';
        names[used + len + 1] = '\0';
    }
    return 0;
}

static int count_adds(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    *(unsigned long long *)data = info->dlpi_adds;
    return 1;
}

/* Modules dlopen'ed since: each is first opened again with RTLD_NOLOAD,
 * which waits for the loader to finish relocating it (and protecting its
 * RELRO), then its slots are taken like the others'. */
static void patch_new_modules(void)
{
    static char names[65536];
    unsigned long long adds = 0;
    dl_iterate_phdr(count_adds, &adds);
    if (adds == seen_adds)
        return;
    names[0] = '\0';
    dl_iterate_phdr(list_new, names);
    static char ready[65536];
    ready[0] = '\0';
    size_t used = 0;
    for (char *n = names, *end; *n; n = end + 1) {
        end = strchr(n, '\n');
        *end = '\0';
        void *h = dlopen(n, RTLD_NOW | RTLD_NOLOAD);
        if (h == NULL)
            continue;             /* gone again, or failed to load */
        dlclose(h);
        size_t len = strlen(n);
        if (used + len + 2 < sizeof ready) {
            memcpy(ready + used, n, len);
            ready[used + len] = '\n';
            used += len + 1;
            ready[used] = '\0';
        }
    }
    if (used)
        dl_iterate_phdr(patch_module, ready);
    seen_adds = adds;
}

/* Where glibc's thread descriptor (pthread_self()) keeps the start routine
 * and its argument: found in the poller's own, which we started with both
 * known; -2 until the poller looked, -1 if no single place matched. Threads
 * started before attach are pool workers like those started after: their
 * routine is what groups them into a pool. */
static long start_routine_at = -2;
static char poller_arg;
static int first_pass_done;        /* the modules loaded at attach are patched */

static void *poller(void *arg);

static void find_start_routine(void)
{
    const uintptr_t *self = (const uintptr_t *)pthread_self();
    long found = -1;
    for (long i = 0; i + 1 < 4096 / (long)sizeof *self; i++)
        if (self[i] == (uintptr_t)poller && self[i + 1] == (uintptr_t)&poller_arg)
            found = found == -1 ? i : -3;          /* twice: not sure which */
    __atomic_store_n(&start_routine_at, found >= 0 ? found : -1, __ATOMIC_RELEASE);
}

uint64_t st_attach_start_routine(void)
{
    long at = __atomic_load_n(&start_routine_at, __ATOMIC_ACQUIRE);
    if (at < 0)
        return 0;
    return ((const uintptr_t *)pthread_self())[at];
}

/* Polls for `stalltrace detach` and the --duration deadline, then gives
 * everything back and ends: the process has no thread of ours left. */
static void *poller(void *arg)
{
    (void)arg;
    find_start_routine();
    while (!__atomic_load_n(&first_pass_done, __ATOMIC_ACQUIRE)) {
        struct timespec t = {0, 1000000};
        syscall(SYS_nanosleep, &t, NULL);
    }
    uint64_t start = st_clock_read_ns(CLOCK_MONOTONIC);
    for (;;) {
        struct timespec t = {0, 100000000};
        syscall(SYS_nanosleep, &t, NULL);
        if (__atomic_load_n(&st_rec.state, __ATOMIC_ACQUIRE) != ST_ACTIVE)
            return NULL;
        int fd = open_trusted(ST_ATTACH_DETACH_FMT);
        int due = duration_s > 0 && (st_clock_read_ns(CLOCK_MONOTONIC) - start) / 1e9 >= duration_s;
        if (fd >= 0)
            close(fd);
        if (fd >= 0 || due) {
            detach();
            return NULL;
        }
        patch_new_modules();
    }
}

int st_attach_begin(void)
{
    /* Our own range (modules.c found it), so only our wrappers are taken for a name. */
    self_lo = st_rec.self_start;
    self_hi = st_rec.self_end;
    if (self_hi <= self_lo)
        return -1;
    __atomic_or_fetch(&st_rec.hdr->flags, ST_FLAG_ATTACHED, __ATOMIC_RELEASE);
    warm_unwinder();

    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);    /* the poller takes no signal of the program's */
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&th, &attr, poller, &poller_arg);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return -1;
    /* The poller finds where start routines are before any slot is ours
     * (no thread claims its slot until then). */
    for (int i = 0; i < 500 && __atomic_load_n(&start_routine_at, __ATOMIC_ACQUIRE) == -2; i++) {
        struct timespec t = {0, 1000000};
        syscall(SYS_nanosleep, &t, NULL);
    }
    dl_iterate_phdr(patch_module, NULL);
    __atomic_store_n(&first_pass_done, 1, __ATOMIC_RELEASE);
    return 0;
}

/* cmd_attach.c - `stalltrace attach PID` and `stalltrace detach PID`: the
 * checks that refuse safely, the settings file, the injection and the request to stop. */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "inject.h"
#include "stalltrace/attach.h"
#include "stalltrace/format.h"

struct libc_map {
    uint64_t base;                /* where its offset 0 is mapped */
    unsigned long inode;
    char path[PATH_MAX];
    uint64_t ldso_lo, ldso_hi;    /* the dynamic loader's text: never borrowed inside */
};

/* One line per refusal: what is wrong and what to do, exit status 2. */
static int refuse(int pid, const char *fmt, const char *what)
{
    fprintf(stderr, "stalltrace: attach %d: ", pid);
    fprintf(stderr, fmt, what);
    fputc('\n', stderr);
    return 2;
}

static int parse_pid(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    return *s && *end == '\0' && v > 0 && v < INT_MAX ? (int)v : -1;
}

/* Opens a file of the target's by its own name for it: through its root,
 * which is its mount namespace's view. */
static int open_in(int pid, const char *name)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "/proc/%d/root%s", pid, name);
    return open(path, O_RDONLY | O_CLOEXEC);
}

/* Reads /proc/PID/maps: libc's mapping, whether a recorder is in, and the
 * dump it maps (a shared mapping starting with the dump magic). */
static int scan_maps(int pid, struct libc_map *libc, int *recorded, char *dump, size_t dumpcap)
{
    char path[64], line[PATH_MAX + 256];
    snprintf(path, sizeof path, "/proc/%d/maps", pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -1;
    libc->base = 0;
    libc->ldso_lo = libc->ldso_hi = 0;
    *recorded = 0;
    if (dump)
        dump[0] = '\0';
    while (fgets(line, sizeof line, f)) {
        unsigned long long lo, hi, off;
        unsigned long inode;
        char perms[8];
        int name_at = 0;
        if (sscanf(line, "%llx-%llx %7s %llx %*s %lu %n", &lo, &hi, perms, &off, &inode, &name_at) < 5 ||
            name_at == 0)
            continue;
        char *name = line + name_at;
        name[strcspn(name, "\n")] = '\0';
        const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
        if (strstr(base, "libstalltrace"))
            *recorded = 1;
        if (strncmp(base, "ld-linux", 8) == 0) {
            libc->ldso_lo = libc->ldso_lo && libc->ldso_lo < lo ? libc->ldso_lo : lo;
            libc->ldso_hi = hi > libc->ldso_hi ? hi : libc->ldso_hi;
        }
        if (libc->base == 0 && off == 0 && strncmp(base, "libc.so.6", 9) == 0) {
            libc->base = lo;
            libc->inode = inode;
            snprintf(libc->path, sizeof libc->path, "%s", name);
        }
        if (dump && !dump[0] && perms[3] == 's' && name[0] == '/') {
            char magic[8];
            int fd = open_in(pid, name);
            if (fd >= 0 && read(fd, magic, 8) == 8 && memcmp(magic, ST_MAGIC, 8) == 0)
                snprintf(dump, dumpcap, "%s", name);
            if (fd >= 0)
                close(fd);
        }
    }
    fclose(f);
    return 0;
}

/* The offsets of names[] in libc's file, default versions (dlopen's is
 * glibc 2.34's); -1 unless all are found. */
static int libc_offsets(int pid, const struct libc_map *libc, const char *const *names, uint64_t *off, int n_names)
{
    int fd = open_in(pid, libc->path);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_ino != libc->inode) {
        if (fd >= 0)
            close(fd);
        return -1;               /* replaced on disk since it was mapped */
    }
    elf_version(EV_CURRENT);
    Elf *e = elf_begin(fd, ELF_C_READ, NULL);
    int found = 0;
    Elf_Scn *scn = NULL, *dynsym = NULL, *versym = NULL;
    GElf_Shdr sh, dsh = {0};
    while (e && (scn = elf_nextscn(e, scn)) != NULL) {
        if (gelf_getshdr(scn, &sh) == NULL)
            continue;
        if (sh.sh_type == SHT_DYNSYM)
            dynsym = scn, dsh = sh;
        else if (sh.sh_type == SHT_GNU_versym)
            versym = scn;
    }
    Elf_Data *data = dynsym ? elf_getdata(dynsym, NULL) : NULL;
    Elf_Data *vdata = versym ? elf_getdata(versym, NULL) : NULL;
    size_t n = data && dsh.sh_entsize ? dsh.sh_size / dsh.sh_entsize : 0;
    for (size_t i = 0; i < n; i++) {
        GElf_Sym sym;
        GElf_Versym v = 0;
        if (gelf_getsym(data, (int)i, &sym) == NULL || sym.st_shndx == SHN_UNDEF)
            continue;
        const char *name = elf_strptr(e, dsh.sh_link, sym.st_name);
        int k = 0;
        while (name && k < n_names && strcmp(name, names[k]) != 0)
            k++;
        if (name == NULL || k == n_names)
            continue;
        if (vdata)
            gelf_getversym(vdata, (int)i, &v);
        if (v & 0x8000)
            continue;            /* a hidden compat version */
        off[k] = sym.st_value;
        found |= 1 << k;
    }
    if (e)
        elf_end(e);
    close(fd);
    return found == (1 << n_names) - 1 ? 0 : -1;
}

/* The library to load: $STALLTRACE_ATTACH_LIB, else next to this executable. */
static int find_attach_lib(char *out, size_t cap)
{
    const char *env = getenv("STALLTRACE_ATTACH_LIB");
    char self[PATH_MAX];
    if (env && *env)
        return realpath(env, out) ? 0 : -1;
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return -1;
    self[n] = '\0';
    const char *dir = dirname(self);
    const char *where[] = {"../preload/", "../lib/stalltrace/", "../lib/x86_64-linux-gnu/stalltrace/"};
    for (unsigned i = 0; i < sizeof where / sizeof *where; i++) {
        char p[PATH_MAX + 128];
        snprintf(p, sizeof p, "%s/%s%s", dir, where[i], ST_ATTACH_LIBNAME);
        if (cap >= PATH_MAX && realpath(p, out))
            return 0;
    }
    return -1;
}

/* Why ptrace was refused, as far as it can be told. */
/* From /proc/PID/status: effective ids, its tracer, its pid in its own namespace. */
struct target_ids {
    unsigned uid, gid, tracer;
    int nspid;
    int seccomp;                  /* 0 none, 1 strict, 2 filter */
    char state;                   /* R S D T t Z ... */
};

static void read_ids(int pid, struct target_ids *t)
{
    char path[64], line[256];
    *t = (struct target_ids){0, 0, 0, pid, 0, '?'};
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "re");
    while (f && fgets(line, sizeof line, f)) {
        sscanf(line, "Uid: %*u %u", &t->uid);
        sscanf(line, "Gid: %*u %u", &t->gid);
        sscanf(line, "TracerPid: %u", &t->tracer);
        sscanf(line, "Seccomp: %d", &t->seccomp);
        sscanf(line, "State: %c", &t->state);
        if (strncmp(line, "NSpid:", 6) == 0 && strrchr(line, '\t'))
            t->nspid = atoi(strrchr(line, '\t') + 1);
    }
    if (f)
        fclose(f);
}

static int explain_eperm(int pid)
{
    char line[64];
    struct target_ids ids;
    read_ids(pid, &ids);
    unsigned uid = ids.uid, tracer = ids.tracer;
    if (tracer) {
        snprintf(line, sizeof line, "%u", tracer);
        return refuse(pid, "it is already traced by process %s (a debugger?): detach that first", line);
    }
    if (uid != geteuid() && geteuid() != 0) {
        snprintf(line, sizeof line, "%u", uid);
        return refuse(pid, "it belongs to uid %s: run attach as that user or as root", line);
    }
    FILE *f = fopen("/proc/sys/kernel/yama/ptrace_scope", "re");
    int scope = -1;
    if (f) {
        if (fscanf(f, "%d", &scope) != 1)
            scope = -1;
        fclose(f);
    }
    if (scope >= 1) {
        snprintf(line, sizeof line, "%d", scope);
        return refuse(pid, "ptrace is not allowed: kernel.yama.ptrace_scope is %s; run as root (scope 1-2) "
                      "or set `sysctl kernel.yama.ptrace_scope=0`", line);
    }
    return refuse(pid, "ptrace is not allowed%s: without CAP_SYS_PTRACE (a container?) add it "
                  "(docker run --cap-add SYS_PTRACE) or run as root", "");
}

/* A request file as the recorder looks for it: in the target's own /tmp
 * (a service's PrivateTmp, a container's), named by its pid as it sees it. */
static void request_path(int pid, const char *fmt, char *out, size_t cap)
{
    char path[64];
    struct target_ids ids;
    read_ids(pid, &ids);
    snprintf(path, sizeof path, fmt, ids.nspid);
    snprintf(out, cap, "/proc/%d/root%s", pid, path);
}

/* Made new (O_EXCL), 0600, and given to the target's user when we are root:
 * the recorder trusts only its own user's or root's, and must read it. */
static int make_request(int pid, const char *fmt, const char *text)
{
    char path[128];
    request_path(pid, fmt, path, sizeof path);
    unlink(path);       /* a stale one of ours; another user's stays and makes us fail */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    struct target_ids ids;
    read_ids(pid, &ids);
    int ok = (geteuid() != 0 || ids.uid == 0 || fchown(fd, ids.uid, ids.gid) == 0) && write(fd, text, strlen(text)) == (ssize_t)strlen(text);
    close(fd);
    if (!ok)
        unlink(path);
    return ok ? 0 : -1;
}

static int write_settings(int pid, const char *output, double threshold_ms, double duration_s)
{
    char buf[PATH_MAX + 128];
    int n = snprintf(buf, sizeof buf, "%s%s\n%s%g\n%s%g\n", ST_ATTACH_KEY_OUTPUT, output,
                     ST_ATTACH_KEY_THRESHOLD, threshold_ms, ST_ATTACH_KEY_DURATION, duration_s);
    return n > 0 && n < (int)sizeof buf ? make_request(pid, ST_ATTACH_CONF_FMT, buf) : -1;
}

static void usage_attach(void)
{
    fprintf(stderr, "usage: stalltrace attach PID [-o PATH] [--threshold MS] [--duration S] [--seccomp-ok]\n");
}

int cmd_attach(int argc, char **argv)
{
    const char *output = "stalltrace.%p.dump";
    double threshold_ms = 20, duration_s = 0;
    int pid = -1, seccomp_ok = 0;
    for (int i = 1; i < argc; i++) {
        char *end;
        if ((strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--output") == 0) && i + 1 < argc) {
            output = argv[++i];
        } else if (strcmp(argv[i], "--threshold") == 0 && i + 1 < argc) {
            threshold_ms = strtod(argv[++i], &end);
            if (*end || !(threshold_ms > 0 && threshold_ms <= 3600e3)) {
                usage_attach();
                return 2;
            }
        } else if (strcmp(argv[i], "--duration") == 0 && i + 1 < argc) {
            duration_s = strtod(argv[++i], &end);
            if (*end || !(duration_s > 0 && duration_s < 1e7)) {
                usage_attach();
                return 2;
            }
        } else if (strcmp(argv[i], "--seccomp-ok") == 0) {
            seccomp_ok = 1;
        } else if (pid < 0 && (pid = parse_pid(argv[i])) > 0) {
            continue;
        } else {
            usage_attach();
            return 2;
        }
    }
    if (pid <= 0) {
        usage_attach();
        return 2;
    }
    char abs_out[2 * PATH_MAX + 2];
    if (output[0] != '/') {
        char cwd[PATH_MAX];
        if (getcwd(cwd, sizeof cwd) == NULL ||
            snprintf(abs_out, sizeof abs_out, "%s/%s", cwd, output) >= (int)sizeof abs_out)
            return refuse(pid, "the output path %s is too long", output);   /* the target's cwd is not ours */
        output = abs_out;
    }

    if (kill(pid, 0) != 0 && errno == ESRCH)
        return refuse(pid, "no such process%s", "");
    struct libc_map libc;
    int recorded;
    char live[PATH_MAX];
    if (scan_maps(pid, &libc, &recorded, live, sizeof live) != 0)
        return errno == ENOENT ? refuse(pid, "no such process%s", "") : explain_eperm(pid);
    if (recorded) {
        /* Which recording: its dump, still mapped under its name, says. */
        struct st_file_header h;
        int hfd = live[0] ? open_in(pid, live) : -1;
        int read_ok = hfd >= 0 && pread(hfd, &h, sizeof h, 0) == (ssize_t)sizeof h;
        if (hfd >= 0)
            close(hfd);
        if (read_ok && !(h.flags & ST_FLAG_ATTACHED))
            return refuse(pid, "it is already recorded (libstalltrace is preloaded in it): %s",
                          "it records until it exits; restart it without the preload to attach");
        if (read_ok && !(h.flags & ST_FLAG_COMPLETE))
            return refuse(pid, "it is already attached (recording to %s): stalltrace detach it first", live);
        return refuse(pid, "it was attached before and detached: %s",
                      "the recorder stays loaded in it, idle, and is not loaded twice; restart it to attach again");
    }
    struct target_ids ids;
    read_ids(pid, &ids);
    if (ids.state == 'T' || ids.state == 't' || ids.state == 'Z')
        return refuse(pid, "%s", ids.state == 'Z' ? "it is a zombie: it has exited"
                      : "it is stopped (SIGSTOP or a debugger): attach would resume it; continue it first");
    if (ids.seccomp == 1)
        return refuse(pid, "it runs in strict seccomp mode (only read, write and exit): %s",
                      "loading anything into it would kill it; it cannot be recorded");
    if (ids.seccomp == 2 && !seccomp_ok)
        return refuse(pid, "it runs under a seccomp filter, which may kill it on a call the recorder makes "
                      "(openat, mmap, mprotect, clone, timer_create...)%s: if the filter allows them (Docker's "
                      "default does), attach again with --seccomp-ok", "");
    if (libc.base == 0)
        return refuse(pid, "it runs a static or non-glibc binary (no libc.so.6 in its maps): %s",
                      "attach needs a dynamically linked glibc program; start it with `stalltrace run`");
    static const char *const names[] = {"dlopen", "__errno_location"};
    uint64_t off[2];
    if (libc_offsets(pid, &libc, names, off, 2) != 0)
        return refuse(pid, "its libc (%s) has no dlopen (glibc older than 2.34?) or was replaced on disk "
                      "since it started", libc.path);
    char lib[PATH_MAX];
    if (find_attach_lib(lib, sizeof lib) != 0)
        return refuse(pid, "cannot find %s (set STALLTRACE_ATTACH_LIB)", ST_ATTACH_LIBNAME);
    char conf[128];
    request_path(pid, ST_ATTACH_CONF_FMT, conf, sizeof conf);
    if (write_settings(pid, output, threshold_ms, duration_s) != 0)
        return refuse(pid, "cannot create %s (another user's file there?)", conf);

    char err[512];
    uint64_t handle = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = st_inject_dlopen(pid, libc.base + off[0], libc.base + off[1], libc.ldso_lo, libc.ldso_hi, lib, &handle, err, sizeof err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    unlink(conf);               /* the recorder has read it, or will never */
    if (rc == -3)
        return explain_eperm(pid);
    if (rc != 0)
        return refuse(pid, "%s", err);
    if (handle == 0)
        return refuse(pid, "dlopen of %s failed in the process (its stderr says why)", lib);
    char dump[PATH_MAX];
    scan_maps(pid, &libc, &recorded, dump, sizeof dump);
    if (dump[0] == '\0')
        return refuse(pid, "the recorder was loaded but made no dump (its stderr says why); %s",
                      "stalltrace detach it");
    double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
    printf("stalltrace: attached to %d in %.0f ms, recording to %s\n", pid, ms, dump);
    return 0;
}

int cmd_detach(int argc, char **argv)
{
    int pid = argc == 2 ? parse_pid(argv[1]) : -1;
    if (pid <= 0) {
        fprintf(stderr, "usage: stalltrace detach PID\n");
        return 2;
    }
    struct libc_map libc;
    int recorded;
    char dump[PATH_MAX];
    if (scan_maps(pid, &libc, &recorded, dump, sizeof dump) != 0) {
        fprintf(stderr, "stalltrace: detach %d: no such process (or not yours)\n", pid);
        return 2;
    }
    if (!recorded || dump[0] == '\0') {
        fprintf(stderr, "stalltrace: detach %d: it is not being recorded\n", pid);
        return 2;
    }
    struct st_file_header h;
    int hfd = open_in(pid, dump);
    int attached = hfd >= 0 && pread(hfd, &h, sizeof h, 0) == (ssize_t)sizeof h && (h.flags & ST_FLAG_ATTACHED);
    if (hfd >= 0)
        close(hfd);
    if (!attached) {
        fprintf(stderr, "stalltrace: detach %d: it was started with the recorder preloaded, which "
                "records until it exits; only `stalltrace attach` recordings detach\n", pid);
        return 2;
    }
    char path[128];
    request_path(pid, ST_ATTACH_DETACH_FMT, path, sizeof path);
    if (make_request(pid, ST_ATTACH_DETACH_FMT, "") != 0) {
        fprintf(stderr, "stalltrace: detach %d: cannot create %s: %s\n", pid, path, strerror(errno));
        return 2;
    }
    /* The recorder polls for the request and sets the dump complete last. */
    for (int i = 0; i < 100; i++) {
        int dfd = open_in(pid, dump);
        int done = dfd >= 0 && pread(dfd, &h, sizeof h, 0) == (ssize_t)sizeof h &&
                   (h.flags & ST_FLAG_COMPLETE);
        if (dfd >= 0)
            close(dfd);
        if (done) {
            printf("stalltrace: detached from %d; dump %s is complete\n", pid, dump);
            return 0;
        }
        struct timespec ms = {0, 50000000};
        nanosleep(&ms, NULL);
    }
    unlink(path);
    fprintf(stderr, "stalltrace: detach %d: the recorder did not answer within 5 s\n", pid);
    return 2;
}

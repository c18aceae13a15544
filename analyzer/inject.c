/* inject.c - ptrace injection of a dlopen call into a running thread.
 * Only a thread blocked in an idle system call is borrowed: there it holds no libc lock the call could need. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <elf.h>

#include "inject.h"

#define ERESTARTSYS 512
#define ERESTARTNOINTR 513
#define ERESTARTNOHAND 514
#define ERESTART_RESTARTBLOCK 516

struct saved {
    struct user_regs_struct regs;
    unsigned char xstate[16384] __attribute__((aligned(64)));
    size_t xstate_len;             /* 0: only the legacy FP area was saved */
    struct user_fpregs_struct fp;
};

/* The borrowed thread's state, as it was stopped (one injection at a time). */
static struct saved s;

/* Waits that hold nothing: an event loop's wait, a sleep, a blocking read. A
 * futex may be a lock wait inside malloc or the loader: never borrowed. */
static int idle_syscall(long nr)
{
    switch (nr) {
    case SYS_epoll_wait: case SYS_epoll_pwait:
#ifdef SYS_epoll_pwait2
    case SYS_epoll_pwait2:
#endif
    case SYS_poll: case SYS_ppoll: case SYS_select: case SYS_pselect6:
    case SYS_nanosleep: case SYS_clock_nanosleep: case SYS_pause: case SYS_rt_sigsuspend:
    case SYS_read: case SYS_recvfrom: case SYS_recvmsg: case SYS_accept: case SYS_accept4:
    case SYS_wait4: case SYS_waitid:
        return 1;
    default:
        return 0;
    }
}

/* Is the thread blocked in an idle call now, by /proc (no stop needed)? */
static int idle_now(int pid, int tid)
{
    char path[96], text[128];
    snprintf(path, sizeof path, "/proc/%d/task/%d/syscall", pid, tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, text, sizeof text - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return 0;
    text[n] = '\0';
    return text[0] != '-' && text[0] != 'r' && idle_syscall(strtol(text, NULL, 10));
}

/* The thread to borrow: the main one if it blocks in an idle call now,
 * else the first that does; 0 if none does at this moment. */
static int idle_thread(int pid)
{
    if (idle_now(pid, pid))
        return pid;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = opendir(path);
    int found = 0;
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        int tid = atoi(e->d_name);
        if (tid > 0 && tid != pid && idle_now(pid, tid)) {
            found = tid;
            break;
        }
    }
    if (d)
        closedir(d);
    return found;
}

/* Looks for an idle thread for up to ~1 s: a loop thread waits in short
 * spells between callbacks, and one look may fall between two (the main
 * thread in a join's futex would then be tried in vain); else the main one,
 * tried again and again. */
static int pick_thread(int pid)
{
    for (int i = 0; i < 100; i++) {
        int tid = idle_thread(pid);
        if (tid > 0)
            return tid;
        struct timespec ms = {0, 10000000};
        nanosleep(&ms, NULL);
    }
    return pid;
}

/* Waits for tid's next stop; signals that arrive meanwhile are passed on. */
static int wait_stop(int tid, int *status, int timeout_ms)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int r = waitpid(tid, status, __WALL | WNOHANG);
        if (r == tid)
            return 0;
        if (r < 0 && errno != EINTR)
            return -1;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000 > timeout_ms) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
}

static int save_regs(int tid, struct saved *s)
{
    if (ptrace(PTRACE_GETREGS, tid, 0, &s->regs) != 0)
        return -1;
    struct iovec iov = {s->xstate, sizeof s->xstate};
    s->xstate_len = ptrace(PTRACE_GETREGSET, tid, (void *)NT_X86_XSTATE, &iov) == 0 ? iov.iov_len : 0;
    if (s->xstate_len == 0 && ptrace(PTRACE_GETFPREGS, tid, 0, &s->fp) != 0)
        return -1;
    return 0;
}

static int restore_regs(int tid, struct saved *s, const struct user_regs_struct *regs)
{
    int rc = ptrace(PTRACE_SETREGS, tid, 0, regs);
    if (s->xstate_len) {
        struct iovec iov = {s->xstate, s->xstate_len};
        rc |= ptrace(PTRACE_SETREGSET, tid, (void *)NT_X86_XSTATE, &iov);
    } else {
        rc |= ptrace(PTRACE_SETFPREGS, tid, 0, &s->fp);
    }
    return rc;
}

/* The registers the kernel would resume with had no tracer been there: an
 * interrupted restartable call is issued again. */
static struct user_regs_struct resumed_regs(const struct user_regs_struct *r)
{
    struct user_regs_struct out = *r;
    long rax = (long)r->rax;
    if ((long)r->orig_rax >= 0) {
        if (rax == -ERESTARTSYS || rax == -ERESTARTNOINTR || rax == -ERESTARTNOHAND) {
            out.rax = r->orig_rax;
            out.rip -= 2;
        } else if (rax == -ERESTART_RESTARTBLOCK) {
            out.rax = SYS_restart_syscall;
            out.rip -= 2;
        }
        out.orig_rax = (unsigned long long)-1;
    }
    return out;
}

/* Stops tid with PTRACE_INTERRUPT: 0 when it is in a group or event stop. */
static int interrupt_stop(int tid, char *err, size_t errcap)
{
    if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) != 0) {
        snprintf(err, errcap, "PTRACE_INTERRUPT of thread %d failed: %s", tid, strerror(errno));
        return -1;
    }
    for (;;) {
        int st;
        if (wait_stop(tid, &st, 2000) != 0) {
            snprintf(err, errcap, "thread %d did not stop: %s", tid, strerror(errno));
            return -1;
        }
        if (WIFEXITED(st) || WIFSIGNALED(st)) {
            snprintf(err, errcap, "the process exited while being attached");
            return -2;
        }
        if (st >> 16 == PTRACE_EVENT_STOP)
            return 0;
        /* A signal on its way: deliver it, our interrupt stays pending. */
        ptrace(PTRACE_CONT, tid, 0, (void *)(long)WSTOPSIG(st));
    }
}

/* Reads or writes the target's memory through /proc/PID/mem (we trace it). */
static int mem_io(int pid, uint64_t addr, void *buf, size_t len, int write)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", pid);
    int fd = open(path, (write ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write ? pwrite(fd, buf, len, (off_t)addr) : pread(fd, buf, len, (off_t)addr);
    close(fd);
    return n == (ssize_t)len ? 0 : -1;
}

static int write_mem(int pid, uint64_t addr, const void *buf, size_t len)
{
    return mem_io(pid, addr, (void *)buf, len, 1);
}

static int read_mem(int pid, uint64_t addr, void *buf, size_t len)
{
    return mem_io(pid, addr, buf, len, 0);
}

/* Runs fn(str, arg) on the stopped thread, from the registers saved in s:
 * the frame below the red zone, str copied there, a return address of 0 so
 * that the return traps (SIGSEGV at 0). The thread is stopped again after.
 * 0 and *ret; -1: not started (thread stopped, state intact); -2: the
 * process died or the call never returned. */
static int call_in(int pid, int tid, uint64_t fn, const char *str, uint64_t arg, uint64_t *ret,
                   char *err, size_t errcap)
{
    struct user_regs_struct call = s.regs;
    size_t len = str ? strlen(str) + 1 : 0;
    uint64_t sp = (s.regs.rsp - 256) & ~(uint64_t)15;
    sp -= (len + 15) & ~(size_t)15;
    uint64_t str_addr = sp;
    uint64_t zero = 0;
    sp -= 8;
    if ((str && write_mem(pid, str_addr, str, len) != 0) || write_mem(pid, sp, &zero, 8) != 0) {
        snprintf(err, errcap, "cannot write the target's stack: %s", strerror(errno));
        return -1;
    }
    call.rsp = sp;
    call.rip = fn;
    call.rdi = str ? str_addr : 0;
    call.rsi = arg;
    call.rax = 0;
    call.orig_rax = (unsigned long long)-1;   /* no syscall restart on resume */
    if (ptrace(PTRACE_SETREGS, tid, 0, &call) != 0 || ptrace(PTRACE_CONT, tid, 0, 0) != 0) {
        snprintf(err, errcap, "cannot start the call: %s", strerror(errno));
        return -1;
    }
    for (;;) {
        int st;
        if (wait_stop(tid, &st, 20000) != 0) {
            snprintf(err, errcap, "a call did not return within 20 s in thread %d (left running)", tid);
            return -2;
        }
        if (WIFEXITED(st) || WIFSIGNALED(st)) {
            snprintf(err, errcap, "the process died during the call");
            return -2;
        }
        if (st >> 16 == PTRACE_EVENT_STOP) {
            ptrace(PTRACE_CONT, tid, 0, 0);
            continue;
        }
        int sig = WSTOPSIG(st);
        struct user_regs_struct now;
        if (sig == SIGSEGV && ptrace(PTRACE_GETREGS, tid, 0, &now) == 0 && now.rip == 0) {
            *ret = now.rax;
            return 0;
        }
        ptrace(PTRACE_CONT, tid, 0, (void *)(long)sig);   /* the program's own signal */
    }
}

int st_inject_dlopen(int pid, uint64_t dlopen_addr, uint64_t errno_loc_addr, uint64_t avoid_lo,
                     uint64_t avoid_hi, const char *lib, uint64_t *handle, char *err, size_t errcap)
{
    int tid = pick_thread(pid);
    if (ptrace(PTRACE_SEIZE, tid, 0, 0) != 0) {
        snprintf(err, errcap, "PTRACE_SEIZE: %s", strerror(errno));
        return errno == EPERM ? -3 : -1;
    }

    /* Borrow the thread only while it blocks in an idle call; else let it
     * run on and look again, for up to ~3 s. */
    int found = 0;
    for (int attempt = 0; attempt < 300 && !found; attempt++) {
        int rc = interrupt_stop(tid, err, errcap);
        if (rc != 0) {
            if (rc != -2)
                ptrace(PTRACE_DETACH, tid, 0, 0);
            return -1;
        }
        if (save_regs(tid, &s) != 0) {
            snprintf(err, errcap, "PTRACE_GETREGS: %s", strerror(errno));
            ptrace(PTRACE_DETACH, tid, 0, 0);
            return -1;
        }
        int in_loader = s.regs.rip >= avoid_lo && s.regs.rip < avoid_hi;
        if ((long)s.regs.orig_rax >= 0 && idle_syscall((long)s.regs.orig_rax) && !in_loader) {
            found = 1;
            break;
        }
        if (attempt == 299)
            break;                        /* still stopped: detached below */
        ptrace(PTRACE_CONT, tid, 0, 0);
        struct timespec ms = {0, 10000000};
        nanosleep(&ms, NULL);
    }
    if (!found) {
        ptrace(PTRACE_DETACH, tid, 0, 0);
        snprintf(err, errcap, "no thread blocked in an event wait, sleep or read within 4 s (thread %d "
                 "tried): nothing was changed; try again when it is less busy", tid);
        return -1;
    }

    /* errno is the thread's: dlopen's path search may leave ENOENT there. */
    uint64_t errno_addr = 0, handle_v = 0;
    int saved_errno = 0;
    int rc = call_in(pid, tid, errno_loc_addr, NULL, 0, &errno_addr, err, errcap);
    if (rc == 0 && (errno_addr == 0 || read_mem(pid, errno_addr, &saved_errno, sizeof saved_errno) != 0))
        errno_addr = 0;           /* not readable: dlopen goes ahead, errno is not put back */
    if (rc == 0)
        rc = call_in(pid, tid, dlopen_addr, lib, 2 /* RTLD_NOW */, &handle_v, err, errcap);
    if (rc == -2)
        return -1;                /* dead, or the thread left running inside the call */
    if (rc == 0 && errno_addr)
        write_mem(pid, errno_addr, &saved_errno, sizeof saved_errno);
    *handle = handle_v;

    struct user_regs_struct back = resumed_regs(&s.regs);
    if (restore_regs(tid, &s, &back) != 0) {
        snprintf(err, errcap, "cannot restore thread %d's registers: %s", tid, strerror(errno));
        return -1;
    }
    ptrace(PTRACE_DETACH, tid, 0, 0);     /* the SIGSEGV is suppressed */
    return rc;
}

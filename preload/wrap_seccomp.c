/* wrap_seccomp.c - a program that filters its own system calls (seccomp)
 * allows only what it makes itself: the recorder steps aside before the filter is in. */
#include <errno.h>
#include <linux/seccomp.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "recorder.h"

/* What glibc's syscall() does, made here: the recorder's own raw calls go
 * through this wrapper too (from signal handlers among them), so it must not
 * resolve anything first. */
static long raw_syscall(long number, long a1, long a2, long a3, long a4, long a5, long a6)
{
    register long r10 __asm__("r10") = a4;
    register long r8 __asm__("r8") = a5;
    register long r9 __asm__("r9") = a6;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(number), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    if ((unsigned long)ret > -4096ul) {
        errno = (int)-ret;
        return -1;
    }
    return ret;
}

/* libseccomp installs its filter through syscall(SYS_seccomp, ...). */
ST_EXPORT long syscall(long number, ...)
{
    va_list ap;
    va_start(ap, number);
    long a1 = va_arg(ap, long), a2 = va_arg(ap, long), a3 = va_arg(ap, long),
         a4 = va_arg(ap, long), a5 = va_arg(ap, long), a6 = va_arg(ap, long);
    va_end(ap);
    if (ST_UNLIKELY(number == SYS_seccomp) && a1 == SECCOMP_SET_MODE_FILTER && !st_tls.recorder_depth)
        st_step_aside();
    return raw_syscall(number, a1, a2, a3, a4, a5, a6);
}

ST_EXPORT int prctl(int option, ...)
{
    va_list ap;
    va_start(ap, option);
    unsigned long a2 = va_arg(ap, unsigned long), a3 = va_arg(ap, unsigned long),
                  a4 = va_arg(ap, unsigned long), a5 = va_arg(ap, unsigned long);
    va_end(ap);
    if (option == PR_SET_SECCOMP && !st_tls.recorder_depth)
        st_step_aside();
    __typeof__(&prctl) real = ST_REAL(prctl);
    if (ST_UNLIKELY(real == NULL))
        return (int)raw_syscall(SYS_prctl, option, (long)a2, (long)a3, (long)a4, (long)a5, 0);
    return real(option, a2, a3, a4, a5);
}

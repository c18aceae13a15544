/* wrap_seccomp.c - a program that filters its own system calls (seccomp)
 * allows only what it makes itself: the recorder steps aside before the filter is in. */
#include <errno.h>
#include <linux/seccomp.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "rawsys.h"
#include "recorder.h"

/* libseccomp installs its filter through syscall(SYS_seccomp, ...), which
 * wrap_futex.c's syscall() hands here. */
void st_seccomp_syscall(long op)
{
    if (op == SECCOMP_SET_MODE_FILTER && !st_tls.recorder_depth)
        st_step_aside();
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
        return (int)st_rawsys6_errno(SYS_prctl, option, (long)a2, (long)a3, (long)a4, (long)a5, 0);
    return real(option, a2, a3, a4, a5);
}

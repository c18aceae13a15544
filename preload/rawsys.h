/* rawsys.h - a system call made with the syscall instruction itself, for the
 * syscall() wrapper: every call it does not look at goes through this.
 */
#ifndef STALLTRACE_RAWSYS_H
#define STALLTRACE_RAWSYS_H

#include <errno.h>

#if defined(__x86_64__)
/* The kernel's own calling convention: what libc's syscall() does after
 * moving its arguments, so the result is the same to the last errno. */
static inline long st_rawsys6(long n, long a1, long a2, long a3, long a4, long a5, long a6)
{
    register long r10 __asm__("r10") = a4;
    register long r8 __asm__("r8") = a5;
    register long r9 __asm__("r9") = a6;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "0"(n), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#else
#error "rawsys.h: no raw system call for this architecture"
#endif

/* libc's convention on top: -1 and errno for the kernel's -4095..-1. */
static inline long st_rawsys6_errno(long n, long a1, long a2, long a3, long a4, long a5, long a6)
{
    long r = st_rawsys6(n, a1, a2, a3, a4, a5, a6);
    if ((unsigned long)r > -4096UL) {
        errno = (int)-r;
        return -1;
    }
    return r;
}

#endif

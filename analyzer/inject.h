/* inject.h - load a shared library into a running process with ptrace: one
 * thread borrowed at a blocking system call, its registers put back exactly. */
#ifndef STALLTRACE_INJECT_H
#define STALLTRACE_INJECT_H

#include <stddef.h>
#include <stdint.h>

/* Calls dlopen(lib, RTLD_NOW) in a thread of pid blocked in an idle call
 * (the main one when it is), dlopen_addr being
 * dlopen's address in pid; its errno (found by __errno_location, at
 * errno_loc_addr) is put back after. A thread stopped with its pc in
 * [avoid_lo, avoid_hi) (the loader, mid-load) is not borrowed. Returns 0 and the handle (0: dlopen failed in the
 * target), or -1 with one line (no newline) in err, the target untouched. */
int st_inject_dlopen(int pid, uint64_t dlopen_addr, uint64_t errno_loc_addr, uint64_t avoid_lo,
                     uint64_t avoid_hi, const char *lib, uint64_t *handle,
                     char *err, size_t errcap);

#endif /* STALLTRACE_INJECT_H */

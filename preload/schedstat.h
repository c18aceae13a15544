/* schedstat.h - a thread's CPU time and run-queue wait, as the kernel counts
 * them (/proc/.../schedstat): tells a stall that ran from one that waited for a CPU. */
#ifndef STALLTRACE_SCHEDSTAT_H
#define STALLTRACE_SCHEDSTAT_H

#include <stdint.h>

struct st_cpu_reading {
    uint64_t at_ns;                  /* since the recording started; 0: none */
    uint64_t cpu_ns;                 /* on a CPU, in all */
    uint64_t runq_ns;                /* runnable but waiting for a CPU, in all */
};

/* Reads thread tid of this process (0: the calling thread) at at_ns; 0 on
 * success. Raw system calls only: no wrapper, no errno the caller sees. */
int st_schedstat_read(uint32_t tid, uint64_t at_ns, struct st_cpu_reading *r);

/* Parses "CPU_NS RUNQ_NS SLICES"; 0 on success (a plain unit: tested alone). */
int st_schedstat_parse(const char *text, uint64_t *cpu_ns, uint64_t *runq_ns);

#endif /* STALLTRACE_SCHEDSTAT_H */

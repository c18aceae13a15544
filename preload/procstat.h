/* procstat.h - what the kernel says of a thread of ours in /proc: its CPU
 * time and run-queue wait (schedstat), whether it runs and blocks a signal (status). */
#ifndef STALLTRACE_PROCSTAT_H
#define STALLTRACE_PROCSTAT_H

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

/* Whether a signal sent to thread tid now would interrupt code running on
 * a CPU and be handled, not land in a sleeping call nor wait blocked for
 * the program to take (state R and sig not in SigBlk); 0 when unknown. */
int st_thread_takes_signal(uint32_t tid, int sig);

/* Parses a status file's text the same way (a plain unit: tested alone). */
int st_status_takes_signal(const char *text, int sig);

/* Whether sig is unblocked in thread tid (a status text), and whether it
 * runs (*running: state R); 0 when unknown. */
int st_thread_signal_unblocked(uint32_t tid, int sig, int *running);
int st_status_signal(const char *text, int sig, int *running);

/* Thread tid's blocked signals and those pending for it or its process
 * (bit sig-1 each); 0, or -1 when unknown. */
int st_thread_signal_masks(uint32_t tid, uint64_t *blocked, uint64_t *pending);
int st_status_signal_masks(const char *text, uint64_t *blocked, uint64_t *pending);

#endif /* STALLTRACE_PROCSTAT_H */

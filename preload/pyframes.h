/* pyframes.h - the Python frames of the calling thread, read in process
 * from CPython's frame chain (3.11, 3.12, 3.13), without the GIL.
 */
#ifndef STALLTRACE_PYFRAMES_H
#define STALLTRACE_PYFRAMES_H

#include <stdint.h>

#include "stalltrace/format.h"

/* Finds the interpreter, if any, and its layout; not from a signal handler
 * (dlsym). Cheap after the first call. */
void st_py_init(void);

/* Fills out[] innermost first and returns the count; *status says how the
 * walk went (st_python_walk). own_context: called by the thread itself
 * inside a wrapped call (plain loads of its own frames); 0 from a signal
 * handler, where every read goes through process_vm_readv, so a wrong guess
 * gives a shorter stack, never a fault. New code objects are written to the
 * ring as ST_REC_PYCODE records. */
unsigned st_py_walk(struct st_pyframe *out, unsigned max, uint8_t *status, int own_context);

/* Where a PyThreadState keeps its thread's kernel tid, once the layout is
 * known; 0 before (or when this is no CPython we know). */
uint32_t st_py_native_tid_offset(void);

/* Shared with the CRuby walker (rbframes.c). st_frames_peek reads the
 * VM's memory: plain loads while st_frames_own(1) (the thread's own frames
 * in a wrapped call), else through st_safe_read. st_code_first_in_lap: 1
 * when a code record for this address must be written now (first time, or
 * first time since the ring came round). */
void st_frames_own(int own_context);
int st_frames_owning(void);        /* the mode st_frames_own set */
int st_frames_peek(void *dst, uintptr_t src, size_t n);
int st_code_first_in_lap(uintptr_t code);

/* After fork: the child's dump has none of the code records yet. */
void st_py_forget(void);

#endif

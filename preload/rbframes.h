/* rbframes.h - the Ruby frames of the calling thread, read in process from
 * CRuby's control frames (3.1), as pyframes.h does for CPython.
 */
#ifndef STALLTRACE_RBFRAMES_H
#define STALLTRACE_RBFRAMES_H

#include <stdint.h>

#include "stalltrace/format.h"

/* Finds libruby, if any, checks its version and where this thread's
 * execution context lives; not from a signal handler (dlsym). Cheap after
 * the first call. */
void st_rb_init(void);

/* As st_py_walk: out[] innermost first (ST_PYFRAME_RUBY frames), the count
 * returned, *status how the walk went; own_context as there. A thread that
 * runs no Ruby (no execution context) gives 0 and ST_PY_NONE. New iseqs are
 * written to the ring as ST_CODE_CRUBY code records. */
unsigned st_rb_walk(struct st_pyframe *out, unsigned max, uint8_t *status, int own_context);

#endif

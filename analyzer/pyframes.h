/* pyframes.h - CPython and CRuby frames in reports: names the script frames a
 * stack carries and splices them in place of the interpreter's evaluation frames. */
#ifndef STALLTRACE_PYFRAMES_H
#define STALLTRACE_PYFRAMES_H

#include <stdbool.h>
#include <stddef.h>

#include "dump.h"
#include "symbolize.h"

/* Names Python frames and owns them (until py_namer_free); strings are
 * borrowed from the dump, which must outlive it. */
struct py_namer;

/* native_only: py_splice leaves stacks as they are (--native-only). */
struct py_namer *py_namer_new(bool native_only);
void py_namer_free(struct py_namer *nm);

/* The frame of one recorded Python frame: kind "python", module "[python]",
 * function = qualified name, file, line; of a Ruby frame (ST_PYFRAME_RUBY):
 * kind "ruby", module "[ruby]", function = the iseq's label. NULL only when
 * out of memory. */
const struct sym_frame *py_namer_frame(struct py_namer *nm, const struct dump_pyframe *pf);

/* Splice the Python frames of ds into its named native frames (*frames, *n,
 * a malloc'd array, innermost first): the innermost _PyEval_EvalFrameDefault
 * frame (rb_vm_exec for Ruby frames) gives way to the Python frames up to and including the first entry
 * frame, the next one to the next run, and so on. Runs left over go after
 * the last evaluation frame (at the end when there is none); evaluation
 * frames left over stay. Frames named from perf maps as Python are dropped
 * when the walk's frames replace them. On success *frames may be a new
 * array (the old one freed); -1 when out of memory (nothing changed). */
int py_splice(struct py_namer *nm, const struct dump_stack *ds, const struct sym_frame ***frames,
              size_t *n);

/* How many stacks spliced so far lacked Python frames because the recorder
 * did not know the interpreter's version (ST_PY_UNSUPPORTED). */
size_t py_namer_unsupported(const struct py_namer *nm);



#endif /* STALLTRACE_PYFRAMES_H */

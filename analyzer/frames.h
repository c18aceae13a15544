/* frames.h - the one policy for naming a place in a stack, used by every
 * command and format: which frames are plumbing, which is the user's own, how a place is said. */
#ifndef STALLTRACE_FRAMES_H
#define STALLTRACE_FRAMES_H

#include <stdbool.h>
#include <stddef.h>

#include "symbolize.h"

/* Named frames, innermost first, recorder frames left out. */
struct m_stack {
    size_t n;
    const struct sym_frame **frames;
    bool truncated;                /* the recorder cut deeper frames */
};

enum frame_role {
    FRAME_PLUMBING,                /* libc, the loader, an interpreter's or runtime's machinery,
                                      stalltrace's own hook */
    FRAME_LIBRARY,                 /* a standard or third-party library the user called */
    FRAME_USER,                    /* the program's own code */
};

enum frame_role frames_role(const struct sym_frame *f);
bool frames_is_plumbing(const struct sym_frame *f);

/* The frame a person should look at: the innermost of the user's own code,
 * else the innermost named library frame, else the innermost Python or JS
 * frame (the dispatch that ran it); SIZE_MAX when there is none. */
size_t frames_culprit(const struct m_stack *s);

/* "function (file:line)", "function (module)" or "0x1234 (module)". */
void frames_describe(const struct sym_frame *f, char *buf, size_t len);

/* Where a stack is, said short: the culprit frame and the user's frame that
 * called it ("load (app.py:15) in handle (app.py:30)"); empty when nothing
 * is named, or a sentence on why (unnamed JIT code). */
void frames_where(const struct m_stack *s, char *buf, size_t len);

/* What two stacks must share to be one place: the culprit frame and the
 * user's frames outward of it (innermost library and native PCs vary from
 * one sample of the same work to the next). A view into s; free its frames. */
int frames_place_key(const struct m_stack *s, struct m_stack *key);

/* Whether frame i of s is folded away in a short view of the stack: runtime
 * plumbing past the innermost frame, and unnamed frames when some are named
 * (the text report's site stacks and the flame view fold the same ones). */
bool frames_folded(const struct m_stack *s, size_t i);

/* The frames a flame graph shows of s, innermost first, into out (room for
 * s->n): the folded ones left out, and the root side cut where the run of
 * code the culprit belongs to is entered, so the program's (or, without one,
 * the library's) outermost frame there is the first row, not _start,
 * Py_RunMain, the interpreter or a framework's runner; a stack of nothing
 * but machinery keeps its named frames. all: every frame. */
size_t frames_flame_view(const struct m_stack *s, bool all, const struct sym_frame **out);

/* The base name of a path (the part after the last '/'). */
const char *frames_basename(const char *path);

#endif /* STALLTRACE_FRAMES_H */

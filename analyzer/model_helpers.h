/* model_helpers.h - what the steps of model_build() share, below them all:
 * stacks (model_stack.c), call, thread and data-symbol names (model_lookup.c). */
#ifndef STALLTRACE_MODEL_HELPERS_H
#define STALLTRACE_MODEL_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* model_stack.c */
/* Name a recorded stack; frames of the recorder are dropped, and inlined
 * functions become frames of their own (at the same address). */
int model_make_stack(struct m_process *p, const struct dump_stack *ds, uint64_t at_ns,
                     struct m_stack *out);
/* strcmp where NULL sorts first and equals only NULL. */
int model_cmp_str(const char *a, const char *b);
/* Two named stacks are the same place when each frame's function and line agree. */
bool model_same_place(const struct m_stack *a, const struct m_stack *b);
/* A total order on (call, named stack) that agrees with model_same_place. */
int model_cmp_place(const char *call_a, const struct m_stack *a, const char *call_b,
                    const struct m_stack *b);

/* model_lookup.c (model_hist_quantile, model_fmt_ms, model_object_kind: model.h) */
const char *model_call_name(unsigned call);
const char *model_thread_name(const struct m_process *p, uint32_t tid);
/* "sym+0xoff" into buf when addr lies in a data symbol; *py_runtime tells
 * whether that symbol is CPython's _PyRuntime. */
bool model_data_symbol(struct m_process *p, uint64_t addr, char *buf, size_t len, bool *py_runtime);

#endif /* STALLTRACE_MODEL_HELPERS_H */

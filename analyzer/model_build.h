/* model_build.h - the steps of model_build() kept in files of their own
 * (pools.c, locks.c, diagnosis.c) and the helpers of model.c they share. */
#ifndef STALLTRACE_MODEL_BUILD_H
#define STALLTRACE_MODEL_BUILD_H

#include "model.h"

/* model.c */
int model_make_stack(struct m_process *p, const struct dump_stack *ds, uint64_t at_ns,
                     struct m_stack *out);
const char *model_call_name(unsigned call);
const char *model_thread_name(const struct m_process *p, uint32_t tid);
int model_cmp_place(const char *call_a, const struct m_stack *a, const char *call_b,
                    const struct m_stack *b);
/* "sym+0xoff" into buf when addr lies in a data symbol; *py_runtime tells
 * whether that symbol is CPython's _PyRuntime. */
bool model_data_symbol(struct m_process *p, uint64_t addr, char *buf, size_t len, bool *py_runtime);

/* locks.c: the lock-wait records, then the locks (after the pools, whose
 * work queues are idleness rather than contention). */
int model_build_lock_waits(struct m_process *p, const struct dump *d);
int model_build_locks(struct m_process *p, const struct dump *d);

/* pools.c: work queues, their workers, saturation and busy time. */
int model_build_pools(struct m_process *p, const struct dump *d);
bool model_is_pool_object(const struct m_process *p, uint64_t addr);
/* A futex word only one thread ever waited on untimed: that thread's parker
 * (a tokio worker's, std::thread::park). Its waits are the thread's own
 * idleness: neither a pool's queue nor a lock. */
bool model_is_futex_parker(const struct st_object *o);

/* queues.c: annotated task queues, matched to the pools that ran them
 * (after the pools). */
int model_build_queues(struct m_process *p, const struct dump *d);

/* pools.c, after the queues: what each pool is (its queues' word, else its
 * threads' start routine) and which of its all-busy spans are saturation
 * (work waited), then what its workers were busy in. */
int model_judge_pools(struct m_process *p, const struct dump *d);
void model_free_queues(struct m_process *p);

/* diagnosis.c: one sentence per culprit, the worst first. */
int model_build_diagnosis(struct m_process *p);

/* Free what the files above built. */
void model_free_pools(struct m_process *p);
void model_free_locks(struct m_process *p);

#endif /* STALLTRACE_MODEL_BUILD_H */

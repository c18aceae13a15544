/* model_build.h - the steps model_build() runs, in its order, each in a
 * file of its own; the helpers they share are below them (model_helpers.h). */
#ifndef STALLTRACE_MODEL_BUILD_H
#define STALLTRACE_MODEL_BUILD_H

#include "model.h"
#include "model_helpers.h"

/* model_threads.c: a model thread per slot, with its loop figures. */
int model_build_threads(struct m_process *p, const struct dump *d);

/* model_stalls.c: the stalls (threshold_ms < 0: all), joined with their
 * samples and details, in time order. */
int model_build_stalls(struct m_process *p, const struct dump *d, double threshold_ms);

/* model_slow_calls.c: slow calls outside loop iterations. */
int model_build_slow_calls(struct m_process *p, const struct dump *d);

/* model_sites.c: the stalls grouped by call and place, worst first (after
 * the stalls). */
int model_build_sites(struct m_process *p);

/* locks.c: the lock-wait records, then the locks (after the pools, whose
 * work queues are idleness rather than contention). */
int model_build_lock_waits(struct m_process *p, const struct dump *d);
int model_build_locks(struct m_process *p, const struct dump *d);

/* model_holders.c: who held the locks long waits were for (after the threads). */
int model_build_holders(struct m_process *p, const struct dump *d);
int model_build_feeders(struct m_process *p, const struct dump *d);

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
void model_free_stalls(struct m_process *p);
void model_free_slow_calls(struct m_process *p);
void model_free_sites(struct m_process *p);
void model_free_pools(struct m_process *p);
void model_free_locks(struct m_process *p);
void model_free_holders(struct m_process *p);
void model_free_feeders(struct m_process *p);

#endif /* STALLTRACE_MODEL_BUILD_H */

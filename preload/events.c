/* events.c - the records the recorder appends to the ring: stalls, in-stall
 * samples, slow calls and lock waits. Each is built on the stack and put in one go.
 */
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "recorder.h"
#include "procstat.h"

/* Room for the largest fixed part and a full stack. */
#define ST_RECORD_BUF (sizeof(struct st_rec_lock_wait) + ST_STACK_BYTES)

uint32_t st_put_stack(struct st_stack *stack, const struct st_captured *c, uint8_t unwinder)
{
    stack->nframes = c->nframes;
    stack->unwinder = unwinder;
    stack->truncated = c->truncated;
    stack->npython = c->npython;
    stack->python = c->python;
    stack->flags = c->jit_marked ? ST_STACK_JIT_MARK : 0;
    uint64_t *out = (uint64_t *)(stack + 1);
    for (unsigned i = 0; i < c->nframes; i++)
        out[i] = c->frames[i];
    memcpy(out + c->nframes, c->py, c->npython * sizeof(struct st_pyframe));
    uint32_t n = c->nframes * (uint32_t)sizeof(uint64_t) +
                 c->npython * (uint32_t)sizeof(struct st_pyframe);
    if (c->jit_marked) {
        memcpy((uint8_t *)out + n, &c->jit_map_bytes, sizeof c->jit_map_bytes);
        n += (uint32_t)sizeof c->jit_map_bytes;
    }
    return n;
}

/* Every record that carries a stack ends with it: fill the stack after the
 * fixed part and append the whole. */
#define PUT_WITH_STACK(type, r, c, unwinder)                                   \
    st_ring_put(&st_rec.ring, type, r, sizeof *(r) + st_put_stack(&(r)->stack, c, unwinder))

/* The stalled thread's CPU use over the stall, when the watchdog saw the
 * iteration begin. */
static void emit_stall_cpu(struct st_tls *t, uint64_t busy_ns)
{
    struct st_cpu_reading before, now;
    uint64_t seq = t->slot->live_iter_seq;
    if (st_watchdog_cpu_before(t->slot, seq, &before) != 0 ||
        st_schedstat_read(0, st_now_ns(), &now) != 0 || now.at_ns < before.at_ns ||
        now.at_ns - before.at_ns < busy_ns || now.cpu_ns < before.cpu_ns ||
        now.runq_ns < before.runq_ns)
        return;
    struct st_rec_stall_cpu r;
    memset(&r, 0, sizeof r);
    r.tid = t->slot->tid;
    r.iter_seq = seq;
    r.window_ns = now.at_ns - before.at_ns;
    r.cpu_ns = now.cpu_ns - before.cpu_ns;
    r.runq_ns = now.runq_ns - before.runq_ns;
    st_ring_put(&st_rec.ring, ST_REC_STALL_CPU, &r, sizeof r);
}

/* The iteration's call kinds, each with its stack; the largest total first. */
static const struct st_iter_call *emit_stall_calls(struct st_tls *t)
{
    union {
        struct st_rec_stall_call rec;
        uint8_t bytes[ST_RECORD_BUF];
    } buf;
    const struct st_iter_call *top = NULL;
    for (unsigned i = 0; i < t->ncalls; i++) {
        const struct st_iter_call *e = &t->calls[i];
        struct st_rec_stall_call *r = &buf.rec;
        memset(r, 0, sizeof *r);
        r->tid = t->slot->tid;
        r->call = e->call;
        r->count = e->count;
        r->iter_seq = t->slot->live_iter_seq;
        r->total_ns = e->total_ns;
        r->max_ns = e->max_ns;
        PUT_WITH_STACK(ST_REC_STALL_CALL, r, &e->stack, ST_UNWIND_LIBUNWIND);
        if (top == NULL || e->total_ns > top->total_ns)
            top = e;
    }
    return top;
}

/* The GIL's holder the watchdog named during the stall, with the time the
 * loop spent waiting for the GIL in it. */
static void emit_stall_gil_holder(struct st_tls *t, uint64_t busy_ns)
{
    uint32_t holder;
    uint64_t start, seq = t->slot->live_iter_seq;
    if (t->gil_seq != seq || t->gil_ns == 0 ||
        !st_holders_gil_of_iteration((unsigned)(t->slot - st_rec.threads), seq, &holder, &start))
        return;
    st_emit_lock_holder(t, ST_CALL_COND_TIMEDWAIT, ST_OBJ_COND, t->gil_object, holder, 0, start,
                        t->gil_ns < busy_ns ? t->gil_ns : busy_ns);
}

void st_emit_stall(struct st_tls *t, uint64_t busy_ns)
{
    union {
        struct st_rec_stall rec;
        uint8_t bytes[ST_RECORD_BUF];
    } buf;
    emit_stall_cpu(t, busy_ns);
    emit_stall_gil_holder(t, busy_ns);
    const struct st_iter_call *top = emit_stall_calls(t);
    struct st_rec_stall *r = &buf.rec;
    memset(r, 0, sizeof *r);
    r->tid = t->slot->tid;
    r->iter_seq = t->slot->live_iter_seq;
    r->start_ns = t->iter_start_ns;
    r->busy_ns = busy_ns;
    r->calls_ns = t->calls_ns;
    static const struct st_captured none;
    const struct st_captured *c = &none;
    /* Wrapped calls "consumed" the stall if they took most of it, however
     * many (a loop serving several requests blocks once for each); the kind
     * that took most is its call. Otherwise the samples tell. */
    if (top != NULL && t->calls_ns * 2 >= busy_ns) {
        r->call = top->call;
        r->call_ns = top->total_ns;
        c = &top->stack;
    }
    PUT_WITH_STACK(ST_REC_STALL, r, c, ST_UNWIND_LIBUNWIND);
}

void st_emit_sample(struct st_tls *t, const struct st_captured *c, uint64_t at_ns)
{
    union {
        struct st_rec_sample rec;
        uint8_t bytes[ST_RECORD_BUF];
    } buf;
    struct st_rec_sample *r = &buf.rec;
    memset(r, 0, sizeof *r);
    r->tid = t->slot->tid;
    r->iter_seq = t->slot->live_iter_seq;
    r->at_ns = at_ns;
    PUT_WITH_STACK(ST_REC_SAMPLE, r, c, ST_UNWIND_LIBUNWIND_SIGNAL);
}

void st_emit_slow_call(struct st_tls *t, uint16_t call, uint64_t start_ns, uint64_t duration_ns,
                       uint64_t object, const struct st_captured *c)
{
    union {
        struct st_rec_slow_call rec;
        uint8_t bytes[ST_RECORD_BUF];
    } buf;
    struct st_rec_slow_call *r = &buf.rec;
    memset(r, 0, sizeof *r);
    r->tid = t->slot->tid;
    r->call = call;
    r->start_ns = start_ns;
    r->duration_ns = duration_ns;
    r->object = object;
    PUT_WITH_STACK(ST_REC_SLOW_CALL, r, c, ST_UNWIND_LIBUNWIND);
    t->slot->slow_calls++;
}

void st_emit_lock_wait(struct st_tls *t, uint16_t call, uint16_t kind, uint64_t object,
                       uint64_t start_ns, uint64_t duration_ns, uint32_t retries,
                       const struct st_captured *c)
{
    union {
        struct st_rec_lock_wait rec;
        uint8_t bytes[ST_RECORD_BUF];
    } buf;
    struct st_rec_lock_wait *r = &buf.rec;
    memset(r, 0, sizeof *r);
    r->tid = t->slot->tid;
    r->call = call;
    r->kind = kind;
    r->object = object;
    r->start_ns = start_ns;
    r->duration_ns = duration_ns;
    r->retries = retries;
    PUT_WITH_STACK(ST_REC_LOCK_WAIT, r, c, ST_UNWIND_LIBUNWIND);
}

void st_emit_holder_sample(struct st_tls *t, uint32_t waiter, uint64_t object,
                           uint64_t wait_start_ns, const struct st_captured *c)
{
    union {
        struct st_rec_holder_sample rec;
        uint8_t bytes[ST_RECORD_BUF];
    } buf;
    struct st_rec_holder_sample *r = &buf.rec;
    memset(r, 0, sizeof *r);
    r->holder_tid = t->slot->tid;
    r->waiter_tid = waiter;
    r->object = object;
    r->wait_start_ns = wait_start_ns;
    r->at_ns = st_now_ns();
    PUT_WITH_STACK(ST_REC_HOLDER_SAMPLE, r, c, ST_UNWIND_LIBUNWIND_SIGNAL);
}

void st_emit_lock_holder(struct st_tls *t, uint16_t call, uint16_t kind, uint64_t object,
                         uint32_t holder, uint32_t readers, uint64_t wait_start_ns, uint64_t held_ns)
{
    struct st_rec_lock_holder r;
    memset(&r, 0, sizeof r);
    r.tid = t->slot->tid;
    r.holder_tid = holder;
    r.readers = holder ? 0 : readers;
    r.call = call;
    r.kind = kind;
    r.object = object;
    r.wait_start_ns = wait_start_ns;
    r.held_ns = held_ns;
    st_ring_put(&st_rec.ring, ST_REC_LOCK_HOLDER, &r, sizeof r);
}

/* events.c - the records the recorder appends to the ring: stalls, in-stall
 * samples, slow calls and lock waits. Each is built on the stack and put in one go.
 */
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "recorder.h"

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

void st_emit_stall(struct st_tls *t, uint64_t busy_ns)
{
    union {
        struct st_rec_stall rec;
        uint8_t bytes[ST_RECORD_BUF];
    } buf;
    struct st_rec_stall *r = &buf.rec;
    memset(r, 0, sizeof *r);
    r->tid = t->slot->tid;
    r->iter_seq = t->slot->live_iter_seq;
    r->start_ns = t->iter_start_ns;
    r->busy_ns = busy_ns;
    r->calls_ns = t->calls_ns;
    static const struct st_captured none;
    const struct st_captured *c = &none;
    /* A call "consumed" the stall only if it took at least half of it;
     * otherwise the iteration was CPU-bound and the samples tell. */
    if (t->top_call != ST_CALL_NONE && t->top_call_ns * 2 >= busy_ns) {
        r->call = t->top_call;
        r->call_ns = t->top_call_ns;
        c = &t->top_stack;
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

/* rwlock_word.h - what glibc's rwlock __readers word says of who holds it:
 * pure arithmetic on one loaded value, shared by the wrappers and tests.
 */
#ifndef ST_RWLOCK_WORD_H
#define ST_RWLOCK_WORD_H

#include <stdint.h>

/* nptl/pthread_rwlock_common.c (glibc 2.25 on): bit 0 is the write phase,
 * bit 1 a writer's claim, bit 2 readers waiting, the rest the readers. */
#define ST_RWLOCK_WRPHASE 1u
#define ST_RWLOCK_READER_SHIFT 3u

/* The readers that hold the lock: only in the read phase (glibc's states
 * #2 and #4), since readers that come in a write phase (#6, #8) count
 * themselves in and then wait; readers held back for a preferred writer
 * (#4a) are not counted at all. */
static inline uint32_t st_rwlock_readers(uint32_t readers_word)
{
    if (readers_word & ST_RWLOCK_WRPHASE)
        return 0;
    return readers_word >> ST_RWLOCK_READER_SHIFT;
}

#endif

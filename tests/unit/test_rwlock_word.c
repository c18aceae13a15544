/* test_rwlock_word.c - the readers glibc's rwlock word says hold it, on
 * made-up words and on this machine's glibc: the layout the recorder reads
 * (__readers, __cur_writer) as a real rwlock fills it. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../../preload/rwlock_word.h"

Test(rwlock_word, counts_readers_only_in_the_read_phase)
{
    cr_expect_eq(st_rwlock_readers(0), 0u);
    cr_expect_eq(st_rwlock_readers(3u << ST_RWLOCK_READER_SHIFT), 3u);
    /* A writer's claim (bit 1) or waiting readers (bit 2) leave the count as it is. */
    cr_expect_eq(st_rwlock_readers((2u << ST_RWLOCK_READER_SHIFT) | 2u | 4u), 2u);
    /* The write phase: readers counted there are waiting, not holding. */
    cr_expect_eq(st_rwlock_readers((5u << ST_RWLOCK_READER_SHIFT) | ST_RWLOCK_WRPHASE), 0u);
    cr_expect_eq(st_rwlock_readers(ST_RWLOCK_WRPHASE | 2u), 0u);
}

static pthread_rwlock_t lock = PTHREAD_RWLOCK_INITIALIZER;
static pthread_barrier_t held, done;

static void *read_and_wait(void *arg)
{
    (void)arg;
    cr_assert_eq(pthread_rwlock_rdlock(&lock), 0);
    pthread_barrier_wait(&held);
    pthread_barrier_wait(&done);
    pthread_rwlock_unlock(&lock);
    return NULL;
}

Test(rwlock_word, glibc_keeps_the_writer_tid_and_the_readers_count)
{
    cr_assert_eq(pthread_rwlock_wrlock(&lock), 0);
    cr_expect_eq((long)lock.__data.__cur_writer, (long)syscall(SYS_gettid));
    cr_expect_eq(st_rwlock_readers(lock.__data.__readers), 0u);
    pthread_rwlock_unlock(&lock);
    cr_expect_eq(lock.__data.__cur_writer, 0);

    enum { READERS = 3 };
    pthread_t t[READERS];
    pthread_barrier_init(&held, NULL, READERS + 1);
    pthread_barrier_init(&done, NULL, READERS + 1);
    for (int i = 0; i < READERS; i++)
        pthread_create(&t[i], NULL, read_and_wait, NULL);
    pthread_barrier_wait(&held);
    cr_expect_eq(st_rwlock_readers(lock.__data.__readers), (unsigned)READERS);
    cr_expect_eq(lock.__data.__cur_writer, 0, "readers leave no tid");
    pthread_barrier_wait(&done);
    for (int i = 0; i < READERS; i++)
        pthread_join(t[i], NULL);
    cr_expect_eq(st_rwlock_readers(lock.__data.__readers), 0u);
}

/* grow.h - the analyzer's one way to grow an array: room doubles from a
 * first size, so appending n elements costs O(n) copies in all. */
#ifndef STALLTRACE_GROW_H
#define STALLTRACE_GROW_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* Room for need (> *cap) elements of size bytes in v, which has room for
 * *cap: the grown array (*cap updated), or NULL with v and *cap untouched
 * when memory or size_t runs out. */
static inline void *grow_array(void *v, size_t *cap, size_t need, size_t first, size_t size)
{
    size_t nc = *cap ? *cap : first;

    while (nc < need) {
        if (nc > SIZE_MAX / 2)
            return NULL;
        nc *= 2;
    }
    if (nc > SIZE_MAX / size)
        return NULL;
    void *grown = realloc(v, nc * size);
    if (grown)
        *cap = nc;
    return grown;
}

/* GROW(arr, cap, need, first): make arr (with room for cap, a size_t
 * lvalue) hold need elements; 0, or -1 with arr and cap as they were. */
#define GROW(arr, cap, need, first)                                                        \
    __extension__({                                                                        \
        size_t need_ = (need);                                                             \
        int rc_ = 0;                                                                       \
        if (need_ > (cap)) {                                                               \
            void *grown_ = grow_array((arr), &(cap), need_, (first), sizeof(*(arr)));      \
            if (grown_)                                                                    \
                (arr) = grown_;                                                            \
            else                                                                           \
                rc_ = -1;                                                                  \
        }                                                                                  \
        rc_;                                                                               \
    })

/* For an array sized to its count (no room kept): one element more. */
#define GROW_ONE(arr, n)                                                                   \
    __extension__({                                                                        \
        void *grown_ = realloc((arr), ((n) + 1) * sizeof(*(arr)));                         \
        grown_ ? ((arr) = grown_, 0) : -1;                                                 \
    })

#endif /* STALLTRACE_GROW_H */

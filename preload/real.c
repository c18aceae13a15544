/* real.c - lazy lookup of the wrapped libc functions.
 * Wrappers run before our constructor and from any thread, so each resolves
 * its real function on first use; a lookup that re-enters itself gets NULL.
 */
#include <dlfcn.h>

#include "recorder.h"

static ST_TLS int resolving;

void *st_real(void **cache, const char *name)
{
    void *fn = __atomic_load_n(cache, __ATOMIC_ACQUIRE);
    if (ST_LIKELY(fn != NULL))
        return fn;
    if (resolving)
        return NULL;      /* dlsym called back into a wrapper: caller falls back */
    resolving = 1;
    int saved_errno = errno;
    fn = dlsym(RTLD_NEXT, name);
    errno = saved_errno;
    resolving = 0;
    __atomic_store_n(cache, fn, __ATOMIC_RELEASE);
    return fn;
}

void *st_real_versioned(void **cache, const char *name, const char *version)
{
    void *fn = __atomic_load_n(cache, __ATOMIC_ACQUIRE);
    if (ST_LIKELY(fn != NULL))
        return fn;
    if (resolving)
        return NULL;
    resolving = 1;
    int saved_errno = errno;
    fn = dlvsym(RTLD_NEXT, name, version);
    if (fn == NULL)
        fn = dlsym(RTLD_NEXT, name);
    errno = saved_errno;
    resolving = 0;
    __atomic_store_n(cache, fn, __ATOMIC_RELEASE);
    return fn;
}

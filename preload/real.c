/* real.c - lazy lookup of the wrapped libc functions.
 * Wrappers run before our constructor and from any thread, so each resolves
 * its real function on first use; a lookup that re-enters itself gets NULL.
 */
#include <dlfcn.h>

#include "recorder.h"

static ST_TLS int resolving;

#ifdef ST_ATTACH_BUILD
/* dlopen'ed after start, RTLD_NEXT may name no libc: ask libc itself. */
#define NEXT (st_attach_libc() ? st_attach_libc() : RTLD_NEXT)
#else
#define NEXT RTLD_NEXT
#endif

void *st_real(void **cache, const char *name)
{
    void *fn = __atomic_load_n(cache, __ATOMIC_ACQUIRE);
    if (ST_LIKELY(fn != NULL))
        return fn;
    if (resolving)
        return NULL;      /* dlsym called back into a wrapper: caller falls back */
    resolving = 1;
    int saved_errno = errno;
    fn = dlsym(NEXT, name);
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
    fn = dlvsym(NEXT, name, version);
    if (fn == NULL)
        fn = dlsym(NEXT, name);
    errno = saved_errno;
    resolving = 0;
    __atomic_store_n(cache, fn, __ATOMIC_RELEASE);
    return fn;
}

/* wrap_ids.c - credential changes (setuid and kin): a process that gives up
 * root keeps recording into the dump it could no longer open or create.
 */
#include <grp.h>
#include <sys/types.h>
#include <unistd.h>

#include "recorder.h"

/* A pre-fork server's worker drops privileges before its first wrapped
 * call: its dump is made now, while it can still be, and a descriptor of
 * it is kept for the end (the dump directory stays root's). */
static void before_credentials_change(void)
{
    if (geteuid() != 0 || st_tls.recorder_depth)
        return;
    int saved_errno = errno;
    if (st_rec.state == ST_CHILD_PENDING)
        st_recorder_child_start();
    if (st_rec.state == ST_ACTIVE) {
        st_tls.recorder_depth++;     /* errno: saved above, for the whole function */
        st_dump_hold();
        st_tls.recorder_depth--;
    }
    errno = saved_errno;
}

#define WRAP_IDS(name, params, args)                                          \
    ST_EXPORT int name params                                                 \
    {                                                                         \
        __typeof__(&name) real = ST_REAL(name);                               \
        if (ST_UNLIKELY(real == NULL)) {                                      \
            errno = ENOSYS;                                                   \
            return -1;                                                        \
        }                                                                     \
        before_credentials_change();                                          \
        return real args;                                                     \
    }

WRAP_IDS(setuid, (uid_t uid), (uid))
WRAP_IDS(setgid, (gid_t gid), (gid))
WRAP_IDS(seteuid, (uid_t uid), (uid))
WRAP_IDS(setegid, (gid_t gid), (gid))
WRAP_IDS(setreuid, (uid_t r, uid_t e), (r, e))
WRAP_IDS(setregid, (gid_t r, gid_t e), (r, e))
WRAP_IDS(setresuid, (uid_t r, uid_t e, uid_t s), (r, e, s))
WRAP_IDS(setresgid, (gid_t r, gid_t e, gid_t s), (r, e, s))
WRAP_IDS(setgroups, (size_t n, const gid_t *list), (n, list))
WRAP_IDS(initgroups, (const char *user, gid_t group), (user, group))

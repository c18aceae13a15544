/* attach.h - how `stalltrace attach` talks to a recorder it loaded: the files
 * it leaves for it (settings, then a detach request), and their trust rules. */
#ifndef STALLTRACE_ATTACH_H
#define STALLTRACE_ATTACH_H

/* Both are made with O_EXCL|O_NOFOLLOW, mode 0600, by the attaching user. The
 * recorder believes one only when it is a regular file of its own euid (or
 * root) that nobody else can read or write, so another user cannot plant
 * settings or a detach in a process that is not theirs. */
#define ST_ATTACH_CONF_FMT "/tmp/.stalltrace-attach.%d"
#define ST_ATTACH_DETACH_FMT "/tmp/.stalltrace-detach.%d"

/* The settings file: "key=value" lines. */
#define ST_ATTACH_KEY_OUTPUT "output="
#define ST_ATTACH_KEY_THRESHOLD "threshold_ms="
#define ST_ATTACH_KEY_DURATION "duration_s="

/* The library `attach` loads: built with dynamic TLS, as a dlopen needs. */
#define ST_ATTACH_LIBNAME "libstalltrace-attach.so"

#endif /* STALLTRACE_ATTACH_H */

/* metrics_trust.h - which dumps `stalltrace metrics` believes: who owns a
 * dump file and who runs the pid it claims, as the kernel says. */
#ifndef STALLTRACE_METRICS_TRUST_H
#define STALLTRACE_METRICS_TRUST_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* A dump counts for PID only if its file is owned by the server's user, or
 * by the owner of PID while PID runs: anyone else could write it to make
 * another user's series up or hide them. */
bool trust_dump(uid_t file_owner, int32_t pid);

/* Does the running PID map the file DEV:INO shared (the recorder maps its
 * own dump)? false when it does not, has ended or is not ours to read. */
bool pid_maps_file(int32_t pid, dev_t dev, ino_t ino);

#endif /* STALLTRACE_METRICS_TRUST_H */

/* metrics_trust.c - the kernel's word on a dump for `stalltrace metrics`:
 * the file's owner, the claimed pid's owner and what that pid maps. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "metrics_trust.h"

bool trust_dump(uid_t file_owner, int32_t pid)
{
    char path[32];
    struct stat st;

    if (file_owner == geteuid())
        return true;
    if (pid <= 0)
        return false;
    /* /proc/PID belongs to the process's effective uid. */
    snprintf(path, sizeof(path), "/proc/%d", (int)pid);
    return stat(path, &st) == 0 && st.st_uid == file_owner;
}

bool pid_maps_file(int32_t pid, dev_t dev, ino_t ino)
{
    char path[40], line[4608];
    bool found = false;
    FILE *f;

    if (pid <= 0)
        return false;
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    if (!(f = fopen(path, "re")))
        return false;
    while (!found && fgets(line, sizeof(line), f)) {
        char perms[8];
        unsigned maj, min;
        unsigned long long inode;

        /* start-end perms offset major:minor inode path */
        if (sscanf(line, "%*s %7s %*s %x:%x %llu", perms, &maj, &min, &inode) != 4)
            continue;
        found = perms[3] == 's' && inode == (unsigned long long)ino && makedev(maj, min) == dev;
    }
    fclose(f);
    return found;
}

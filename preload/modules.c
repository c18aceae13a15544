/* modules.c - the module map in the dump: every loaded object's address
 * range, load bias, path and build-id, so stacks are symbolized offline.
 */
#include <elf.h>
#include <link.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include "recorder.h"

static int refresh_lock;

static void lock(void)
{
    while (__atomic_exchange_n(&refresh_lock, 1, __ATOMIC_ACQUIRE))
        sched_yield();
}

static void unlock(void) { __atomic_store_n(&refresh_lock, 0, __ATOMIC_RELEASE); }

static uint32_t read_build_id(const struct dl_phdr_info *info, uint8_t *out)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr);
        const char *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *note = (const ElfW(Nhdr) *)p;
            const char *name = p + sizeof *note;
            const uint8_t *desc = (const uint8_t *)name + ((note->n_namesz + 3u) & ~3u);
            const char *next = (const char *)desc + ((note->n_descsz + 3u) & ~3u);
            if (next > end)
                break;
            if (note->n_type == NT_GNU_BUILD_ID && note->n_namesz == 4 &&
                memcmp(name, "GNU", 4) == 0) {
                uint32_t n = note->n_descsz < ST_BUILD_ID_MAX ? note->n_descsz : ST_BUILD_ID_MAX;
                memcpy(out, desc, n);
                return n;
            }
            p = next;
        }
    }
    return 0;
}

static int known(uintptr_t start, const char *path)
{
    uint32_t n = st_rec.hdr->module_count;
    for (uint32_t i = n; i-- > 0;) {
        struct st_module *m = &st_rec.modules[i];
        if (m->start == start)
            return strncmp(m->path, path, ST_PATH_MAX - 1) == 0;
    }
    return 0;
}

static int add_module(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    int *first = arg;
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t s = info->dlpi_addr + ph->p_vaddr, e = s + ph->p_memsz;
        lo = s < lo ? s : lo;
        hi = e > hi ? e : hi;
    }
    if (hi == 0)
        return 0;

    uint32_t flags = 0;
    char path[ST_PATH_MAX];
    const char *name = info->dlpi_name;
    if (*first && (name == NULL || name[0] == '\0')) {
        ssize_t k = readlink("/proc/self/exe", path, sizeof path - 1);
        path[k > 0 ? k : 0] = '\0';
        flags |= ST_MODULE_MAIN;
    } else {
        strncpy(path, name ? name : "", sizeof path - 1);
        path[sizeof path - 1] = '\0';
    }
    *first = 0;
    if (strncmp(path, "linux-vdso", 10) == 0 || strncmp(path, "linux-gate", 10) == 0)
        flags |= ST_MODULE_VDSO;
    if ((uintptr_t)&add_module >= lo && (uintptr_t)&add_module < hi) {
        flags |= ST_MODULE_SELF;
        st_rec.self_start = lo, st_rec.self_end = hi;
    }
    if (strstr(path, "/ld-linux") != NULL || strncmp(path, "ld-linux", 8) == 0)
        st_rec.ldso_start = lo, st_rec.ldso_end = hi;
    if (path[0] == '\0' || known(lo, path))
        return 0;

    struct st_file_header *h = st_rec.hdr;
    if (h->module_count >= h->module_capacity) {
        h->modules_untracked++;
        return 0;
    }
    struct st_module *m = &st_rec.modules[h->module_count];
    memset(m, 0, sizeof *m);
    m->flags = flags;
    m->start = lo;
    m->end = hi;
    m->bias = info->dlpi_addr;
    m->loaded_ns = st_now_ns();
    m->build_id_len = read_build_id(info, m->build_id);
    memcpy(m->path, path, sizeof m->path);
    __atomic_store_n(&m->valid, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&h->module_count, h->module_count + 1, __ATOMIC_RELEASE);
    return 0;
}

/* Never from a signal handler: dl_iterate_phdr takes the loader's lock. */
void st_modules_refresh(void)
{
    if (st_rec.hdr == NULL)
        return;
    int saved_errno = st_recorder_enter(&st_tls);
    lock();
    int first = 1;
    dl_iterate_phdr(add_module, &first);
    unlock();
    st_recorder_leave(&st_tls, saved_errno);
}

/* Are all these addresses in modules we know? New ones appear after dlopen. */
int st_modules_cover(const uintptr_t *frames, unsigned n)
{
    uint32_t count = st_rec.hdr ? st_rec.hdr->module_count : 0;
    for (unsigned f = 0; f < n; f++) {
        int found = 0;
        for (uint32_t i = 0; i < count && !found; i++)
            found = frames[f] >= st_rec.modules[i].start && frames[f] < st_rec.modules[i].end;
        if (!found)
            return 0;
    }
    return 1;
}

/*
 * alloc_count: an LD_PRELOAD library that counts a process's heap calls.
 *
 *   cc -O2 -shared -fPIC -o alloc_count.so alloc_count.c -ldl
 *   ALLOC_COUNT_FILE=/tmp/counts LD_PRELOAD=./alloc_count.so some-program
 *
 * It interposes malloc, calloc, realloc, free and the aligned allocators (posix_memalign,
 * aligned_alloc, memalign, valloc, pvalloc), forwards each to the next definition
 * (glibc's, found with dlsym(RTLD_NEXT)), and counts calls and requested bytes in relaxed
 * atomics. When ALLOC_COUNT_FILE is set, the counters live in that file, mapped shared, so
 * another process can read them with pread() at any moment without stopping this one.
 * The file is 4096 bytes; its first eight little-endian u64 words are:
 *
 *   [0] magic 0x636f6c6c61777070 ("ppwalloc" read as little-endian bytes)
 *   [1] allocations: malloc, calloc and the aligned allocators (successful calls)
 *   [2] reallocs (successful calls, realloc(NULL, n) included)
 *   [3] frees of non-null pointers (realloc(p, 0) that frees is counted here too)
 *   [4] bytes requested by allocations and reallocs (the new size of a realloc)
 *   [5] pid of the process that owns the file
 *   [6] allocations served from the bootstrap buffer (dlsym's own calloc)
 *   [7] reserved, 0
 *
 * dlsym itself may call calloc before the real allocator is known; those few requests are
 * served from a static bootstrap buffer that is never freed to glibc.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAGIC 0x636f6c6c61777070ULL

enum { W_MAGIC, W_ALLOCS, W_REALLOCS, W_FREES, W_BYTES, W_PID, W_BOOT, W_RESERVED, W_N };

/* Counters before the file is mapped (and when no file is asked for). */
static uint64_t local_counters[W_N];
static uint64_t *counters = local_counters;

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static void *(*real_memalign)(size_t, size_t);
static void *(*real_valloc)(size_t);
static void *(*real_pvalloc)(size_t);

static _Alignas(64) unsigned char boot_buf[16384];
static size_t boot_used;
static int resolving;

static int in_boot(const void *p) {
    return (const unsigned char *)p >= boot_buf && (const unsigned char *)p < boot_buf + sizeof boot_buf;
}

static void *boot_alloc(size_t n) {
    size_t start = (boot_used + 15) & ~(size_t)15;
    if (n > sizeof boot_buf || start > sizeof boot_buf - n) {
        return NULL;
    }
    boot_used = start + n;
    __atomic_fetch_add(&counters[W_BOOT], 1, __ATOMIC_RELAXED);
    return boot_buf + start; /* static storage: already zero */
}

static void count(int word, uint64_t by) {
    uint64_t *c = __atomic_load_n(&counters, __ATOMIC_ACQUIRE);
    __atomic_fetch_add(&c[word], by, __ATOMIC_RELAXED);
}

static void resolve(void) {
    if (real_malloc || resolving) {
        return;
    }
    resolving = 1;
    real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    real_posix_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
    real_memalign = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
    real_valloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "valloc");
    real_pvalloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "pvalloc");
    resolving = 0;
}

/* Maps ALLOC_COUNT_FILE and moves the counters there. open, ftruncate and mmap do not
 * allocate, so this is safe to run before main. */
__attribute__((constructor)) static void alloc_count_init(void) {
    resolve();
    const char *path = getenv("ALLOC_COUNT_FILE");
    if (!path || !*path) {
        return;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return;
    }
    if (ftruncate(fd, 4096) != 0) {
        close(fd);
        return;
    }
    void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        return;
    }
    uint64_t *file = (uint64_t *)m;
    for (int i = W_ALLOCS; i < W_N; i++) {
        file[i] = __atomic_load_n(&local_counters[i], __ATOMIC_RELAXED);
    }
    file[W_PID] = (uint64_t)getpid();
    file[W_MAGIC] = MAGIC;
    __atomic_store_n(&counters, file, __ATOMIC_RELEASE);
}

void *malloc(size_t n) {
    if (!real_malloc) {
        if (resolving) {
            return boot_alloc(n);
        }
        resolve();
    }
    void *p = real_malloc(n);
    if (p) {
        count(W_ALLOCS, 1);
        count(W_BYTES, n);
    }
    return p;
}

void *calloc(size_t k, size_t n) {
    if (!real_calloc) {
        if (resolving) {
            size_t total;
            if (__builtin_mul_overflow(k, n, &total)) {
                return NULL;
            }
            return boot_alloc(total);
        }
        resolve();
    }
    void *p = real_calloc(k, n);
    if (p) {
        count(W_ALLOCS, 1);
        count(W_BYTES, (uint64_t)k * n);
    }
    return p;
}

void *realloc(void *old, size_t n) {
    if (old && in_boot(old)) {
        /* From the bootstrap buffer: move it to the real heap (we do not know its size, so
         * copy what can be there). */
        void *p = malloc(n);
        if (p) {
            size_t avail = (size_t)(boot_buf + sizeof boot_buf - (unsigned char *)old);
            memcpy(p, old, n < avail ? n : avail);
        }
        return p;
    }
    if (!real_realloc) {
        if (resolving) {
            return old ? NULL : boot_alloc(n);
        }
        resolve();
    }
    void *p = real_realloc(old, n);
    if (p) {
        count(W_REALLOCS, 1);
        count(W_BYTES, n);
    } else if (old && n == 0) {
        count(W_FREES, 1);
    }
    return p;
}

void free(void *p) {
    if (!p || in_boot(p)) {
        return;
    }
    if (!real_free) {
        resolve();
    }
    count(W_FREES, 1);
    real_free(p);
}

int posix_memalign(void **out, size_t align, size_t n) {
    if (!real_posix_memalign) {
        resolve();
        if (!real_posix_memalign) {
            return ENOMEM;
        }
    }
    int r = real_posix_memalign(out, align, n);
    if (r == 0) {
        count(W_ALLOCS, 1);
        count(W_BYTES, n);
    }
    return r;
}

void *aligned_alloc(size_t align, size_t n) {
    if (!real_aligned_alloc) {
        resolve();
        if (!real_aligned_alloc) {
            return NULL;
        }
    }
    void *p = real_aligned_alloc(align, n);
    if (p) {
        count(W_ALLOCS, 1);
        count(W_BYTES, n);
    }
    return p;
}

void *memalign(size_t align, size_t n) {
    if (!real_memalign) {
        resolve();
        if (!real_memalign) {
            return NULL;
        }
    }
    void *p = real_memalign(align, n);
    if (p) {
        count(W_ALLOCS, 1);
        count(W_BYTES, n);
    }
    return p;
}

void *valloc(size_t n) {
    if (!real_valloc) {
        resolve();
        if (!real_valloc) {
            return NULL;
        }
    }
    void *p = real_valloc(n);
    if (p) {
        count(W_ALLOCS, 1);
        count(W_BYTES, n);
    }
    return p;
}

void *pvalloc(size_t n) {
    if (!real_pvalloc) {
        resolve();
        if (!real_pvalloc) {
            return NULL;
        }
    }
    void *p = real_pvalloc(n);
    if (p) {
        count(W_ALLOCS, 1);
        count(W_BYTES, n);
    }
    return p;
}

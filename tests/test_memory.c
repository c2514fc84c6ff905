/* test_memory.c - what creating a layer costs in memory.

   - The library allocates once per layer (through MOE_MALLOC, counted here), exactly the
     packed size it reports, and that size is the format's bytes per weight times the weights
     plus the fp32 router and a little padding: no second copy, no temporary buffers.
   - Peak RSS: sources mapped from a file and released through on_packed (madvise) as they are
     packed, the way the CLI's loader does it, peak at about the packed size plus the experts
     being packed at that moment (one per thread); without the release, the peak holds every
     source too (which shows that the measurement can tell the two apart).

   Linux only (mmap, madvise, getrusage); skipped under AddressSanitizer, whose shadow memory
   and quarantine are in the RSS. Not run under qemu (the emulator's own memory is in the RSS).

   Build: cc -std=c99 -O2 -march=native -fopenmp -I. tests/test_memory.c -o test_memory -lm */
#define _DEFAULT_SOURCE 1
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

static size_t g_allocs, g_bytes;
static void *count_malloc(size_t n) {
    g_allocs++, g_bytes += n;
    return malloc(n);
}
#define MOE_MALLOC(sz, ctx) ((void)(ctx), count_malloc(sz))
#define MOE_FREE(p, ctx) ((void)(ctx), free(p))
#define MOE_IMPLEMENTATION
#include "moe.h"

#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "check.h"

#if defined(__SANITIZE_ADDRESS__)
#define ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN 1
#endif
#endif
#ifndef ASAN
#define ASAN 0
#endif

enum { E = 32, D = 1024, FF = 512 };

static double peak_mib(void) { /* the process's peak RSS so far */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static double rss_mib(void) { /* the RSS now */
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        fclose(f);
    }
    return (double)resident * (double)sysconf(_SC_PAGESIZE) / 1048576.0;
}

static void release(void *user, const void *data, size_t bytes) {
    uintptr_t a = ((uintptr_t)data + 4095) & ~(uintptr_t)4095, b = ((uintptr_t)data + bytes) & ~(uintptr_t)4095;
    (void)user;
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

/* Creates a bf16 layer from sources mapped from `path`; returns the peak RSS during creation
   less the RSS before it (MiB); valid while that peak is the process's highest so far. */
static double create_from_file(const char *path, int do_release, size_t *packed) {
    size_t per = (size_t)FF * D * 2, n = 3 * (size_t)E * per + (size_t)E * D * 2;
    int fd = open(path, O_RDONLY);
    const unsigned char *m = (const unsigned char *)mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return -1.0;
    const void *pg[E], *pu[E], *pd[E];
    for (int e = 0; e < E; e++) {
        pg[e] = m + (size_t)(3 * e) * per, pu[e] = m + (size_t)(3 * e + 1) * per;
        pd[e] = m + (size_t)(3 * e + 2) * per; /* each expert's three matrices side by side */
    }
    moe_config c;
    memset(&c, 0, sizeof c);
    c.d_model = D, c.d_ff = FF, c.n_experts = E, c.top_k = 2;
    moe_weights w;
    memset(&w, 0, sizeof w);
    w.router.data = m + 3 * (size_t)E * per, w.router.dtype = MOE_BF16;
    w.gate.per_expert = pg, w.up.per_expert = pu, w.down.per_expert = pd;
    w.gate.dtype = w.up.dtype = w.down.dtype = MOE_BF16;
    if (do_release) w.on_packed = release;
    double before = rss_mib();
    moe_layer *L = NULL;
    moe_result r = moe_layer_create(&L, &c, &w);
    double grew = peak_mib() - before;
    CHECK_MSG(r == MOE_OK, "create: %s", moe_result_string(r));
    *packed = moe_layer_packed_bytes(L);
    moe_layer_free(L);
    munmap((void *)(uintptr_t)m, n);
    return grew;
}

int main(void) {
    /* one allocation, of exactly the reported size, which is the weights' size */
    for (int f = MOE_FORMAT_F32; f <= MOE_FORMAT_F16; f++) {
        enum { d = 200, ff = 96, e = 6 };
        static float src[3 * e * ff * d], router[e * d];
        moe_config c;
        memset(&c, 0, sizeof c);
        c.d_model = d, c.d_ff = ff, c.n_experts = e, c.top_k = 2, c.format = (moe_format)f;
        moe_weights w;
        memset(&w, 0, sizeof w);
        w.router.data = router, w.gate.data = src, w.up.data = src + e * ff * d;
        w.down.data = src + 2 * e * ff * d;
        g_allocs = g_bytes = 0;
        moe_layer *L = NULL;
        CHECK_INT(moe_layer_create(&L, &c, &w), MOE_OK);
        CHECK_INT(g_allocs, 1);
        CHECK_INT(g_bytes, moe_layer_packed_bytes(L));
        size_t nr = MOE__NR, wbytes = f == MOE_FORMAT_F32 ? 4 : 2;
        /* gate/up: ff rounded to panels; down: d rounded to panels; router: fp32, E to panels;
           the rest (< 4 KiB) is the layer struct and the 64-byte alignment of each array */
        size_t want = e * ((ff + nr - 1) / nr * nr * 2 * d + (d + nr - 1) / nr * nr * ff) * wbytes +
                      (e + nr - 1) / nr * nr * d * 4;
        CHECK_MSG(g_bytes >= want && g_bytes <= want + 4096, "format %d: %zu bytes for %zu", f,
                  g_bytes, want);
        moe_layer_free(L);
    }

    if (ASAN) {
        printf("peak RSS: skipped under AddressSanitizer\n");
        return check_summary();
    }
    /* a file of bf16 sources, written one expert at a time (so it never sits in our RSS) */
    char path[] = "/tmp/moe_test_memory_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return check_summary();
    size_t per = (size_t)FF * D * 2;
    unsigned short *buf = (unsigned short *)malloc(per);
    for (int part = 0; part < 3 * E + 1; part++) {
        size_t n = part < 3 * E ? per : (size_t)E * D * 2;
        for (size_t i = 0; i < n / 2; i++) buf[i] = (unsigned short)(0x3c00 + (i * 7 + (size_t)part) % 512);
        CHECK(write(fd, buf, n) == (ssize_t)n);
    }
    free(buf);
    close(fd);
    int nth = 1;
#if MOE__OMP
    nth = omp_get_max_threads();
#endif
    size_t packed = 0;
    double released = create_from_file(path, 1, &packed);
    double kept = create_from_file(path, 0, &packed);
    unlink(path);
    double packed_mib = (double)packed / 1048576.0, expert_mib = 3.0 * (double)per / 1048576.0;
    double bound = packed_mib + nth * expert_mib + 8.0; /* 8 MiB: the process's own pages */
    printf("packed %.1f MiB, one expert's sources %.1f MiB, %d threads: peak RSS growth %.1f MiB "
           "released as packed (bound %.1f), %.1f MiB kept\n",
           packed_mib, expert_mib, nth, released, bound, kept);
    CHECK_MSG(released >= 0.0 && released <= bound, "peak %.1f MiB > %.1f", released, bound);
    CHECK_MSG(kept > packed_mib * 1.8, "without release the peak (%.1f MiB) should hold the sources",
              kept);
    return check_summary();
}

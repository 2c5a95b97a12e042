/* kvmpmu shim: CPUID and TSC/clock pairs for kvmpmu.host.caps. */
#include <cpuid.h>
#include <errno.h>
#include <stdint.h>
#include <time.h>
#include <x86intrin.h>

static int kvmpmu_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t *out4)
{
    unsigned a, b, c, d;
    __cpuid_count(leaf, subleaf, a, b, c, d);
    out4[0] = a; out4[1] = b; out4[2] = c; out4[3] = d;
    return 0;
}

static int kvmpmu_tsc_clock_pair(int tries, uint64_t *out3)
{
    uint64_t best_w = UINT64_MAX, best_tsc = 0, best_ns = 0;
    if (tries < 1) tries = 1;
    for (int i = 0; i < tries; i++) {
        struct timespec ts;
        unsigned aux;
        uint64_t t0 = __rdtscp(&aux);
        if (clock_gettime(CLOCK_MONOTONIC_RAW, &ts) < 0) return -errno;
        uint64_t t1 = __rdtscp(&aux);
        if (t1 >= t0 && t1 - t0 < best_w) {
            best_w = t1 - t0;
            best_tsc = t0 + (t1 - t0) / 2;
            best_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        }
    }
    if (best_w == UINT64_MAX) return -EAGAIN;
    out3[0] = best_tsc; out3[1] = best_ns; out3[2] = best_w;
    return 0;
}

/* Read bandwidth of one core: sums a buffer of the given size (KiB) with eight independent
 * AVX2 accumulators (two would make the adds' latency the bound), best of many passes.
 * With more buffers than one, each pass reads the next, so that they come from memory.
 *
 *   gcc -O2 -mavx2 -o /tmp/read_bandwidth scripts/read_bandwidth.c
 *   /tmp/read_bandwidth 4096 1     # 4 MiB, in L3 after the first pass
 *   /tmp/read_bandwidth 16384 4    # 4 x 16 MiB, from memory
 */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s KIB BUFFERS\n", argv[0]);
        return 2;
    }
    size_t n = (size_t)atoi(argv[1]) << 8; /* floats */
    int bufs = atoi(argv[2]);
    if (n < 64 || bufs < 1) {
        fprintf(stderr, "need at least 1 KiB and one buffer\n");
        return 2;
    }
    n -= n % 64;
    float **b = malloc(bufs * sizeof(float *));
    for (int i = 0; i < bufs; i++) {
        b[i] = aligned_alloc(64, n * 4);
        for (size_t j = 0; j < n; j++) b[i][j] = 1.0f;
    }
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    int passes = n * 4 < ((size_t)4 << 20) ? 2000 : 60;
    double best = 1e9;
    for (int r = 0; r < passes; r++) {
        const float *p = b[r % bufs];
        double t = now();
        for (size_t j = 0; j < n; j += 64) {
            a0 = _mm256_add_ps(a0, _mm256_load_ps(p + j));
            a1 = _mm256_add_ps(a1, _mm256_load_ps(p + j + 8));
            a2 = _mm256_add_ps(a2, _mm256_load_ps(p + j + 16));
            a3 = _mm256_add_ps(a3, _mm256_load_ps(p + j + 24));
            a4 = _mm256_add_ps(a4, _mm256_load_ps(p + j + 32));
            a5 = _mm256_add_ps(a5, _mm256_load_ps(p + j + 40));
            a6 = _mm256_add_ps(a6, _mm256_load_ps(p + j + 48));
            a7 = _mm256_add_ps(a7, _mm256_load_ps(p + j + 56));
        }
        t = now() - t;
        if (t < best) best = t;
    }
    float out[8];
    __m256 sum = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                               _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    _mm256_storeu_ps(out, sum);
    printf("%s KiB x %d buffers: %.1f GB/s (checksum %g)\n", argv[1], bufs, n * 4 / best / 1e9, out[0]);
    return 0;
}

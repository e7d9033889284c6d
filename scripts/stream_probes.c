/* Two probes of one core's streaming speed, for the bounds in README.md (Performance).
 *
 *   gcc -O2 -mavx2 -mfma -o /tmp/stream_probes scripts/stream_probes.c
 *
 * `read KIB BUFFERS`: sums a buffer of KIB KiB with eight independent AVX2 accumulators
 * (two would make the adds' latency the bound), best of many passes; with more buffers
 * than one, each pass reads the next, so that they come from memory.
 *   /tmp/stream_probes read 4096 1     # 4 MiB, in L3 after the first pass
 *   /tmp/stream_probes read 16384 4    # 4 x 16 MiB, from memory
 *
 * `row-pair K N`: the single-row step product's loop in plain C, to compare with the
 * crate's kernel: one row of A against W packed in panels of 32 columns, each panel two
 * 16-column strips of K rows (the AVX2 layout), both strips of a panel read together,
 * steps alternating between two accumulator sets; best of 3000 passes over the same W.
 *   /tmp/stream_probes row-pair 512 2048    # compare with [1, 512] x [512, 2048]
 */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int read_bandwidth(int argc, char **argv) {
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

static int row_pair_loop(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s K N (K even, N a multiple of 32)\n", argv[0]);
        return 2;
    }
    int k = atoi(argv[1]), n = atoi(argv[2]);
    if (k < 2 || k % 2 || n < 32 || n % 32) {
        fprintf(stderr, "K must be even and N a multiple of 32\n");
        return 2;
    }
    float *w = aligned_alloc(64, (size_t)k * n * 4), *a = aligned_alloc(64, k * 4);
    float *c = aligned_alloc(64, n * 4);
    for (size_t j = 0; j < (size_t)k * n; j++) w[j] = 1e-3f;
    for (int j = 0; j < k; j++) a[j] = 1.0f;
    double best = 1e9;
    for (int r = 0; r < 3000; r++) {
        double t = now();
        for (int p = 0; p < n / 32; p++) {
            const float *s0 = w + (size_t)p * 32 * k, *s1 = s0 + 16 * k;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            for (int kk = 0; kk < k; kk += 2) {
                __m256 x = _mm256_broadcast_ss(a + kk), y = _mm256_broadcast_ss(a + kk + 1);
                a0 = _mm256_fmadd_ps(x, _mm256_load_ps(s0 + kk * 16), a0);
                a1 = _mm256_fmadd_ps(x, _mm256_load_ps(s0 + kk * 16 + 8), a1);
                a2 = _mm256_fmadd_ps(x, _mm256_load_ps(s1 + kk * 16), a2);
                a3 = _mm256_fmadd_ps(x, _mm256_load_ps(s1 + kk * 16 + 8), a3);
                b0 = _mm256_fmadd_ps(y, _mm256_load_ps(s0 + kk * 16 + 16), b0);
                b1 = _mm256_fmadd_ps(y, _mm256_load_ps(s0 + kk * 16 + 24), b1);
                b2 = _mm256_fmadd_ps(y, _mm256_load_ps(s1 + kk * 16 + 16), b2);
                b3 = _mm256_fmadd_ps(y, _mm256_load_ps(s1 + kk * 16 + 24), b3);
            }
            _mm256_storeu_ps(c + p * 32, _mm256_add_ps(a0, b0));
            _mm256_storeu_ps(c + p * 32 + 8, _mm256_add_ps(a1, b1));
            _mm256_storeu_ps(c + p * 32 + 16, _mm256_add_ps(a2, b2));
            _mm256_storeu_ps(c + p * 32 + 24, _mm256_add_ps(a3, b3));
        }
        t = now() - t;
        if (t < best) best = t;
    }
    printf("[1, %d] x [%d, %d]: best %.1f us, W at %.1f GB/s (checksum %g)\n", k, k, n, best * 1e6,
           (double)k * n * 4 / best / 1e9, c[5]);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "read") == 0) return read_bandwidth(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "row-pair") == 0) return row_pair_loop(argc - 1, argv + 1);
    fprintf(stderr, "usage: %s read KIB BUFFERS | row-pair K N\n", argv[0]);
    return 2;
}

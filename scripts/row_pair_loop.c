/* The single-row step product's loop in plain C, to compare with the crate's kernel: one
 * row of A against W packed in panels of 32 columns, each panel two 16-column strips of K
 * rows (the AVX2 layout), both strips of a panel read together, steps alternating between
 * two accumulator sets. Prints the best of 3000 passes over the same W (in cache after the
 * first).
 *
 *   gcc -O2 -mavx2 -mfma -o /tmp/row_pair_loop scripts/row_pair_loop.c
 *   /tmp/row_pair_loop 512 2048    # K, N: compare with [1, 512] x [512, 2048]
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

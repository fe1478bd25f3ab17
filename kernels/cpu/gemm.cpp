// A cache-blocked, packed SGEMM in the style of BLIS/GotoBLAS, small enough to read.
//
// The product is cut into KC-deep slices of the inner dimension. For each slice:
//  1. A[:, slice] is packed into row panels of MR rows: for each k, the MR values of a column sit
//     next to each other, so the micro-kernel reads A with unit stride whatever A's layout. (Not when
//     C is narrow: A is then read where it lies; see gemm().)
//  2. B[slice, :] is packed into column panels of NR columns likewise, NC columns at a time, so that
//     a wide B (the LM head's 49152 columns) is packed into a block that stays in cache.
//  3. Every (MR×NR) tile of C is computed by the micro-kernel gemm_tile (gemm.h): MR×NR
//     accumulators live in 12 vector registers (NR is two vectors: 32 floats with AVX-512, 16
//     with AVX2), and each k does MR broadcasts and 12 fused multiply-adds.
// Transposes cost nothing extra: they only change how the packing reads. Threads split the tiles
// (OpenMP, static), and every C element is summed in the same order whatever the thread count, so
// results are bit-reproducible.
#include "kernels/cpu/gemm.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace cpu {
namespace {

constexpr int MR = TILE_M, NR = TILE_N;
constexpr int KC = GEMM_KC;  // depth of a slice: an A panel (6 KB) and a B panel (KC·NR·4: 32 KB, 16 with AVX2) stay in L1/L2
constexpr int NC = 2048;  // columns of B (and C) per block: its packed B (2 MB) and C stay in cache over all K
constexpr int MC = 4098;  // rows of A per block (a multiple of MR): its packed slice is 4.2 MB at most

// Pack op(A)[r0:r0+M, k0:k0+kc] into panels of MR rows (zero-padded past M).
void pack_a(bool trans, const float* A, int lda, int r0, int M, int k0, int kc, float* dst) {
    int panels = (M + MR - 1) / MR;
    #pragma omp for schedule(static)
    for (int p = 0; p < panels; p++) {
        float* d = dst + (size_t)p * MR * kc;
        for (int k = 0; k < kc; k++)
            for (int i = 0; i < MR; i++) {
                int row = p * MR + i;
                d[k * MR + i] = row >= M ? 0.0f
                                : trans  ? A[(size_t)(k0 + k) * lda + r0 + row]
                                         : A[(size_t)(r0 + row) * lda + k0 + k];
            }
    }
}

// Pack op(B)[k0:k0+kc, c0:c0+N] into panels of NR columns (zero-padded past N).
void pack_b(bool trans, const float* B, int ldb, int c0, int N, int k0, int kc, float* dst) {
    int panels = (N + NR - 1) / NR;
    #pragma omp for schedule(static)
    for (int p = 0; p < panels; p++) {
        float* d = dst + (size_t)p * NR * kc;
        for (int k = 0; k < kc; k++) {
            int j0 = c0 + p * NR, jn = std::min(NR, c0 + N - j0);
            float* row = d + k * NR;
            if (!trans) {
                memcpy(row, B + (size_t)(k0 + k) * ldb + j0, jn * sizeof(float));
            } else {
                for (int j = 0; j < jn; j++) row[j] = B[(size_t)(j0 + j) * ldb + k0 + k];
            }
            for (int j = jn; j < NR; j++) row[j] = 0.0f;
        }
    }
}

// A few rows times a weight stored [N, K] (y = x Wᵀ while decoding): memory-bound, so read each
// weight row once, straight from where it lies, and use it for all M rows. Packing would copy the
// whole matrix for a handful of multiply-adds per element.
void gemm_few_rows(int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb, float* C, int ldc) {
    #pragma omp parallel for schedule(static)
    for (int j = 0; j < N; j++) {
        const float* w = B + (size_t)j * ldb;
        for (int i = 0; i < M; i++) {
            const float* a = A + (size_t)i * lda;
            float s = 0.0f;
            #pragma omp simd reduction(+ : s)
            for (int k = 0; k < K; k++) s += a[k] * w[k];
            C[(size_t)i * ldc + j] += alpha * s;
        }
    }
}

}  // namespace

void gemm(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
          float beta, float* C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (beta == 0.0f)
        for (int i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, N * sizeof(float));
    if (K <= 0) return;
    if (M <= 4 && !transA && transB) return gemm_few_rows(M, N, K, alpha, A, lda, B, ldb, C, ldc);
    // Packing A pays for itself when each A panel serves many B panels. For a narrow C (LoRA's x·Aᵀ,
    // s·dy·B and dyᵀ·u have N = r) copying A costs more than the products it feeds, and the tile reads
    // A where it lies, through its strides. Measured on a 2-core Zen 3 (AVX2, NR = 16), M 1024, K 576:
    // N 8 goes from 18 to 57 GFLOP/s, N 64 from 62 to 83, N 128 from 70 to 81; at N 576 the two
    // are even, and at N 1536 and more packing wins by 10–30%.
    const bool direct_a = N <= 8 * NR;
    const size_t a_row = transA ? 1 : lda, a_k = transA ? lda : 1;
    static thread_local std::vector<float> abuf, bbuf;  // reused across calls: no allocation per GEMM
    if (!direct_a) abuf.resize((size_t)(std::min(M, MC) + MR - 1) / MR * MR * KC);
    bbuf.resize((size_t)(std::min(N, NC) + NR - 1) / NR * NR * KC);
    float* ap = abuf.data();
    float* bp = bbuf.data();
    // Column blocks outside, depth slices inside: a block of C (M × NC) takes all its K slices while
    // it is still in cache (the LM head's C, 256 × 49152 floats, would not be). A tall A (the LM
    // head's weight gradient has 49152 rows) goes in blocks of MC rows. Every thread walks the same
    // loops; the implicit barrier after each omp for keeps a packing from overwriting panels still
    // in use. Each C element still sums its K slices in order: results do not depend on the blocking.
    #pragma omp parallel
    for (int c0 = 0; c0 < N; c0 += NC) {
        int nb = std::min(NC, N - c0), b_panels = (nb + NR - 1) / NR;
        for (int k0 = 0; k0 < K; k0 += KC) {
            int kc = std::min(KC, K - k0);
            pack_b(transB, B, ldb, c0, nb, k0, kc, bp);
            for (int r0 = 0; r0 < M; r0 += MC) {
                int mb = std::min(MC, M - r0), a_panels = (mb + MR - 1) / MR;
                if (!direct_a) pack_a(transA, A, lda, r0, mb, k0, kc, ap);
                // Tiles in column-panel-major order: consecutive tiles of a thread share the B panel.
                #pragma omp for schedule(static)
                for (int t = 0; t < a_panels * b_panels; t++) {
                    int jp = t / a_panels, ip = t % a_panels;
                    int i0 = r0 + ip * MR, j0 = c0 + jp * NR;
                    const float* a = direct_a ? A + (transA ? (size_t)k0 * lda + i0 : (size_t)i0 * lda + k0)
                                              : ap + (size_t)ip * MR * kc;
                    gemm_tile(std::min(MR, M - i0), std::min(NR, N - j0), kc, a, direct_a ? a_row : 1,
                              direct_a ? a_k : MR, bp + (size_t)jp * NR * kc, NR, alpha, C + (size_t)i0 * ldc + j0, ldc,
                              true);
                }
            }
        }
    }
}

}  // namespace cpu

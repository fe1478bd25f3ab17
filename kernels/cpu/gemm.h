// The CPU backend's matrix multiplies: one register tile, and the packed GEMM built on it. matmul,
// LoRA and the LM head call gemm(); attention calls the tile directly on its small blocks.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstring>

namespace cpu {

// C[M,N] = alpha · op(A)[M,K] · op(B)[K,N] + beta · C, row-major, op(X) = Xᵀ when trans is set
// (then X is stored [K,M] / [N,K]). beta is 0 (overwrite) or 1 (accumulate).
void gemm(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
          float beta, float* C, int ldc);

// C = add before a GEMM with beta = add ? 1 : 0 (add: null, C itself, or another tensor of C's
// size that does not overlap it): the CPU's way to "C = add + A·B", which the GPU's GEMM does in
// one pass.
inline void start_from(float* C, const float* add, size_t n) {
    if (add && add != C) memcpy(C, add, n * sizeof(float));
}

// The register tile is TILE_M rows × two vectors: 6 × 32 floats in 12 registers with AVX-512 (32
// zmm), 6 × 16 in 12 of AVX2's 16 ymm. Two AVX-512-wide vectors per row on an AVX2 machine would be
// 24 accumulators in 16 registers: spilled every k (1.7 GFLOP/s measured on a 2-core AVX2 EPYC).
// Each C element still sums over k in order, whatever the width.
#if defined(__AVX512F__)
constexpr int VEC_FLOATS = 16;
#else
constexpr int VEC_FLOATS = 8;
#endif
constexpr int TILE_M = 6;               // rows of the register tile
constexpr int TILE_N = 2 * VEC_FLOATS;  // columns of the register tile: two vectors
// The depth of gemm()'s slices of the inner dimension: it sums each C element over K a slice at a time,
// in order, so callers that cut K at multiples of it (lora.cpp) keep the same sums.
constexpr int GEMM_KC = 256;
typedef float vfloat __attribute__((vector_size(VEC_FLOATS * 4)));

// The micro-kernel: C[i, 0:nc] = (accumulate ? C[i, 0:nc] : 0) + alpha · Σ_k A[i, k] · B[k, 0:nc] for
// i < mr <= TILE_M, with A[i, k] = a[i·as + k·ak] and each B row (ldb apart) holding TILE_N readable
// floats. The TILE_M × TILE_N sums live in 12 vector registers; each k costs two vector loads,
// TILE_M broadcasts and 12 fused multiply-adds. A's strides make transposes free: the GEMM passes
// its packed panels (as = 1, ak = TILE_M), attention passes rows or columns of its score blocks.
__attribute__((always_inline)) inline void gemm_tile(int mr, int nc, int kc, const float* a, size_t as, size_t ak, const float* b, size_t ldb,
                      float alpha, float* c, size_t ldc, bool accumulate) {
    vfloat acc[TILE_M][2] = {};
    const float* row[TILE_M];
    for (int i = 0; i < TILE_M; i++) row[i] = a + (size_t)std::min(i, mr - 1) * as;  // spare rows repeat the last
    for (int k = 0; k < kc; k++) {
        vfloat b0, b1;
        memcpy(&b0, b + k * ldb, sizeof b0);
        memcpy(&b1, b + k * ldb + VEC_FLOATS, sizeof b1);
        for (int i = 0; i < TILE_M; i++) {
            float ai = row[i][k * ak];
            acc[i][0] += ai * b0;
            acc[i][1] += ai * b1;
        }
    }
    for (int i = 0; i < mr; i++) {
        float t[TILE_N];
        memcpy(t, acc[i], sizeof t);
        float* ci = c + i * ldc;
        for (int j = 0; j < nc; j++) ci[j] = (accumulate ? ci[j] : 0.0f) + alpha * t[j];
    }
}

}  // namespace cpu

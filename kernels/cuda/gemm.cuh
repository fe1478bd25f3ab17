// The CUDA backend's one matrix-multiply routine (cuBLASLt, kernels/cuda/matmul.cu): matmul and
// LoRA both go through it, as the CPU's matmul and LoRA go through cpu::gemm.
#pragma once
#include "kernels/cuda/common.cuh"

namespace cuda {
// C[M,N] = alpha · op(A)[M,K] · op(B)[K,N] + beta · C, row-major, op(X) = Xᵀ when trans is set (then
// X is stored [K,M] / [N,K]); the same contract as cpu::gemm. A and B are BF16, the products
// accumulate in FP32, and C is BF16 or FP32 (parameter gradients accumulate in FP32).
// beta is 0 (overwrite) or 1 (accumulate); K = 0 gives beta·C, as on the CPU. Deterministic: each
// shape keeps the algorithm it got first. With C_in (BF16 only, same layout as C: C itself, or a
// tensor that does not overlap it) the added term is beta · C_in instead: cuBLASLt reads C_in and
// writes C in the one pass (x_mid = x + att·Woᵀ without a copy of x first).
void gemm(bool transA, bool transB, int M, int N, int K, float alpha, const bf16* A, int lda, const bf16* B, int ldb,
          float beta, bf16* C, int ldc, const bf16* C_in = nullptr);
void gemm(bool transA, bool transB, int M, int N, int K, float alpha, const bf16* A, int lda, const bf16* B, int ldb,
          float beta, float* C, int ldc);
}  // namespace cuda

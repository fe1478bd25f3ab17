// The CPU backend's one matrix-multiply routine; matmul, LoRA and the LM head all go through it.
#pragma once

namespace cpu {
// C[M,N] = alpha · op(A)[M,K] · op(B)[K,N] + beta · C, row-major, op(X) = Xᵀ when trans is set
// (then X is stored [K,M] / [N,K]). beta is 0 (overwrite) or 1 (accumulate).
void gemm(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
          float beta, float* C, int ldc);
}  // namespace cpu

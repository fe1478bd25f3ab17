// The adapter path of a LoRA linear layer (Hu et al. 2021):
//   y = add + s · (drop(x) Aᵀ) Bᵀ,   A: [r, C], B: [OC, r], s = alpha/r (alpha/sqrt(r) with rsLoRA)
// (add: null, y itself, or the residual stream; the base GEMM then accumulates x Wᵀ onto y.)
// Two thin GEMMs through the rank-r bottleneck instead of forming s·B·A (OC×C): the work is
// O(N·r·(C+OC)), small next to the frozen base GEMM. Backward with u = drop(x)Aᵀ, du = s · dy B:
//   dB += s · dyᵀ u,   dA += duᵀ drop(x),   dx (+)= drop'(du A)
// Inverted dropout: kept elements are scaled by 1/(1−p); the mask is hash_uniform(key, index) ≥ p.
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/kernels.h"
#include "model/util.h"

namespace cpu {

// dst = drop(src); dst may equal src (the backward masks its gradient in place).
static void dropout_apply(float* dst, const float* src, size_t n, float p, uint64_t key) {
    float keep_scale = 1.0f / (1.0f - p);
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) dst[i] = hash_uniform(key, i) >= p ? src[i] * keep_scale : 0.0f;
}

void lora_forward(float* y, float* u, const float* x, const float* A, const float* B, int N, int C, int OC, int r,
                  float scale, float p, uint64_t dropout_key, const float* add) {
    const float* xin = x;
    std::vector<float> xd;
    if (p > 0.0f) {
        xd.resize((size_t)N * C);
        dropout_apply(xd.data(), x, xd.size(), p, dropout_key);
        xin = xd.data();
    }
    gemm(false, true, N, r, C, 1.0f, xin, C, A, C, 0.0f, u, r);     // u = drop(x) Aᵀ
    start_from(y, add, (size_t)N * OC);
    gemm(false, true, N, OC, r, scale, u, r, B, r, add ? 1.0f : 0.0f, y, OC);  // y = add + s · u Bᵀ
}

void lora_backward(float* dx, float* dA, float* dB, const float* dy, const float* x, const float* u, const float* A,
                   const float* B, int N, int C, int OC, int r, float scale, float p, uint64_t dropout_key,
                   bool accumulate) {
    std::vector<float> du((size_t)N * r);
    gemm(true, false, OC, r, N, scale, dy, OC, u, r, 1.0f, dB, r);          // dB += s · dyᵀ u
    gemm(false, false, N, r, OC, scale, dy, OC, B, r, 0.0f, du.data(), r);  // du = s · dy B
    if (p > 0.0f) {
        std::vector<float> xd((size_t)N * C), dxd((size_t)N * C);
        dropout_apply(xd.data(), x, xd.size(), p, dropout_key);
        gemm(true, false, r, C, N, 1.0f, du.data(), r, xd.data(), C, 1.0f, dA, C);  // dA += duᵀ drop(x)
        if (dx) {
            gemm(false, false, N, C, r, 1.0f, du.data(), r, A, C, 0.0f, dxd.data(), C);
            dropout_apply(dxd.data(), dxd.data(), dxd.size(), p, dropout_key);       // same mask, same scale
            #pragma omp parallel for schedule(static)
            for (size_t i = 0; i < dxd.size(); i++) dx[i] = accumulate ? dx[i] + dxd[i] : dxd[i];
        }
    } else {
        gemm(true, false, r, C, N, 1.0f, du.data(), r, x, C, 1.0f, dA, C);
        if (dx) gemm(false, false, N, C, r, 1.0f, du.data(), r, A, C, accumulate ? 1.0f : 0.0f, dx, C);  // dx (+)= du A
    }
}

}  // namespace cpu

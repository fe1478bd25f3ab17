// The adapter path of LoRA linear layers (Hu et al. 2021), for a group of projections reading one x:
//   y = add + s · (drop(x) Aᵀ) Bᵀ,   A: [r, C], B: [OC, r], s = alpha/r (alpha/sqrt(r) with rsLoRA)
// (add: null, y itself, or the residual stream; the base GEMM then accumulates x Wᵀ onto y.)
// Two thin GEMMs through the rank-r bottleneck instead of forming s·B·A (OC×C): the work is
// O(N·r·(C+OC)), small next to the frozen base GEMM. Backward with u = drop(x)Aᵀ, du = s · dy B:
//   dB += s · dyᵀ u,   dA += duᵀ drop(x),   dx (+)= drop'(du A)
// Inverted dropout: kept elements are scaled by 1/(1−p); the mask is dropout_keep(key, index) (hash.h).
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/kernels.h"
#include "model/util.h"

namespace cpu {

// dst = drop(src), or dst += drop(src) with accumulate.
static void dropout_apply(float* dst, const float* src, size_t n, float p, uint64_t key, bool accumulate) {
    const float keep_scale = 1.0f / (1.0f - p);
    const uint32_t threshold = dropout_threshold(p);
    #pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float v = dropout_keep(key, i, threshold) ? src[i] * keep_scale : 0.0f;
        dst[i] = accumulate ? dst[i] + v : v;
    }
}

void lora_forward(const LoraProj<float>* proj, int G, float* u, const float* x, int N, int C, int r, float scale,
                  float p) {
    const int ldu = G * r;
    std::vector<float> xd;
    for (int t = 0; t < G; t++) {
        const LoraProj<float>& a = proj[t];
        const float* xin = x;
        if (p > 0.0f) {
            xd.resize((size_t)N * C);
            dropout_apply(xd.data(), x, xd.size(), p, a.dropout_key, false);
            xin = xd.data();
        }
        gemm(false, true, N, r, C, 1.0f, xin, C, a.A, C, 0.0f, u + t * r, ldu);  // u_t = drop_t(x) A_tᵀ
        start_from(a.y, a.add, (size_t)N * a.OC);
        // y_t = add_t + s · u_t B_tᵀ
        gemm(false, true, N, a.OC, r, scale, u + t * r, ldu, a.B, r, a.add ? 1.0f : 0.0f, a.y, a.OC);
    }
}

// The oracle takes the group's projections one at a time: the sum over t is the same in any order
// up to FP32 rounding (a backend may stack them).
void lora_backward(const LoraProj<float>* proj, int G, float* dx, const float* x, const float* u, int N, int C, int r,
                   float scale, float p, bool accumulate) {
    const int ldu = G * r;
    std::vector<float> du((size_t)N * r), xd, dxd;
    for (int t = 0; t < G; t++) {
        const LoraProj<float>& a = proj[t];
        gemm(true, false, a.OC, r, N, scale, a.dy, a.OC, u + t * r, ldu, 1.0f, a.dB, r);  // dB += s · dyᵀ u
        gemm(false, false, N, r, a.OC, scale, a.dy, a.OC, a.B, r, 0.0f, du.data(), r);    // du = s · dy B
        const bool acc = accumulate || t > 0;  // the group's later terms add to the first
        if (p > 0.0f) {
            xd.resize((size_t)N * C);
            dropout_apply(xd.data(), x, xd.size(), p, a.dropout_key, false);
            gemm(true, false, r, C, N, 1.0f, du.data(), r, xd.data(), C, 1.0f, a.dA, C);  // dA += duᵀ drop(x)
            if (!dx) continue;
            dxd.resize((size_t)N * C);
            gemm(false, false, N, C, r, 1.0f, du.data(), r, a.A, C, 0.0f, dxd.data(), C);
            dropout_apply(dx, dxd.data(), dxd.size(), p, a.dropout_key, acc);  // dx (+)= drop(du A): same mask
        } else {
            gemm(true, false, r, C, N, 1.0f, du.data(), r, x, C, 1.0f, a.dA, C);
            if (dx) gemm(false, false, N, C, r, 1.0f, du.data(), r, a.A, C, acc ? 1.0f : 0.0f, dx, C);  // dx (+)= du A
        }
    }
}

}  // namespace cpu

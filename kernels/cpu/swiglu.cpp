// SwiGLU gate (Shazeer 2020): h = silu(g) · u, silu(g) = g·σ(g).
//   dh/dg = u · σ(g) · (1 + g·(1 − σ(g))),  dh/du = silu(g)
#include <cmath>

#include "kernels/cpu/exp.h"
#include "kernels/kernels.h"

namespace cpu {

void swiglu_forward(float* h, const float* gate, const float* up, size_t N) {
    #pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < N; i++) {
        float g = gate[i], s = 1.0f / (1.0f + exp_fast(-g));
        h[i] = g * s * up[i];
    }
}

void swiglu_backward(float* dgate, float* dup, const float* dh, const float* gate, const float* up, size_t N) {
    #pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < N; i++) {
        float g = gate[i], s = 1.0f / (1.0f + exp_fast(-g));
        dgate[i] = dh[i] * up[i] * s * (1.0f + g * (1.0f - s));
        dup[i] = dh[i] * g * s;
    }
}

}  // namespace cpu

// RMSNorm (Zhang & Sennrich 2019), as LLaMA uses it: no mean subtraction, no bias.
//   y = x · r · w,  r = 1/sqrt(mean(x²) + eps)   (+ add: a post-norm onto the residual stream)
// Backward, with g = dy ∘ w:
//   dx = r · g − x · r³ · mean(g ∘ x)      dw = Σ_n dy ∘ x · r
#include <cmath>

#include "kernels/kernels.h"

namespace cpu {

void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int N, int C, float eps, const float* add) {
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float* xr = x + (size_t)n * C;
        float ss = 0.0f;
        for (int c = 0; c < C; c++) ss += xr[c] * xr[c];
        float r = 1.0f / std::sqrt(ss / C + eps);
        float* o = out + (size_t)n * C;
        const float* a = add ? add + (size_t)n * C : nullptr;
        if (a) for (int c = 0; c < C; c++) o[c] = a[c] + xr[c] * r * w[c];
        else for (int c = 0; c < C; c++) o[c] = xr[c] * r * w[c];
        rstd[n] = r;
    }
}

void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd, int N, int C) {
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float* xr = x + (size_t)n * C;
        const float* g = dout + (size_t)n * C;
        float r = rstd[n], dot = 0.0f;
        for (int c = 0; c < C; c++) dot += g[c] * w[c] * xr[c];
        float k = r * r * r * dot / C;
        float* d = dx + (size_t)n * C;
        for (int c = 0; c < C; c++) d[c] += r * g[c] * w[c] - xr[c] * k;
    }
    if (dw) {
        #pragma omp parallel for schedule(static)
        for (int c = 0; c < C; c++) {
            float s = 0.0f;
            for (int n = 0; n < N; n++) s += dout[(size_t)n * C + c] * x[(size_t)n * C + c] * rstd[n];
            dw[c] += s;
        }
    }
}

}  // namespace cpu

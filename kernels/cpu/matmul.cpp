// Linear layer y = x Wᵀ + b on the CPU: both directions are GEMMs with different transposes.
#include "kernels/cpu/gemm.h"
#include "kernels/kernels.h"

namespace cpu {

void matmul_forward(float* out, const float* inp, const float* w, const float* bias, int N, int C, int OC, const float* add) {
    start_from(out, add, (size_t)N * OC);
    gemm(false, true, N, OC, C, 1.0f, inp, C, w, C, add ? 1.0f : 0.0f, out, OC);
    if (bias) {
        #pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OC; o++) out[(size_t)n * OC + o] += bias[o];
    }
}

void matmul_backward(float* dinp, float* dw, float* dbias, const float* dout, const float* inp, const float* w, int N,
                     int C, int OC, bool accumulate) {
    if (dinp) gemm(false, false, N, C, OC, 1.0f, dout, OC, w, C, accumulate ? 1.0f : 0.0f, dinp, C);  // dX (+)= dY · W
    if (dw) gemm(true, false, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dw, C);      // dW = dYᵀ · X
    if (dbias) {
        // Column sums, one thread per column range: no atomics, same order every time.
        #pragma omp parallel for schedule(static)
        for (int o = 0; o < OC; o++) {
            float s = 0.0f;
            for (int n = 0; n < N; n++) s += dout[(size_t)n * OC + o];
            dbias[o] += s;
        }
    }
}

}  // namespace cpu

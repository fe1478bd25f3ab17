// DoRA (Liu et al. 2024, weight-decomposed low-rank adaptation): an adapted projection's weight
// W + s·B·A is split into a direction and a trained magnitude m [OC], one per output row:
//   W' = m ⊙ (W + s·BA) / ‖W + s·BA‖,  the norm of each row taken over its C inputs,
// so y = x·W'ᵀ = (m / norm) ⊙ (x·Wᵀ + s·(x·Aᵀ)·Bᵀ) column by column. The model computes the
// parenthesis z with the ordinary LoRA path (lora_forward + the base GEMM) and these three ops do
// the rest: the norms, the rescale, and its backward. As the paper (section 4.3) and PEFT do, the norm
// is a constant of the step: no gradient flows through it into A and B, which saves the backward
// of an [OC, C] product.
#include <cmath>
#include <vector>

#include "kernels/kernels.h"

namespace cpu {

// One row of W + s·B·A at a time: (B·A)_j = Σ_k B[j,k]·A[k,:], r axpys of length C into a row buffer.
void dora_norm(float* norm, const float* w, const float* A, const float* B, int OC, int C, int r, float scale) {
    #pragma omp parallel
    {
        std::vector<float> row(C);
        #pragma omp for schedule(static)
        for (int j = 0; j < OC; j++) {
            const float* wj = w + (size_t)j * C;
            for (int i = 0; i < C; i++) row[i] = 0.0f;
            for (int k = 0; k < r; k++) {
                const float b = B[(size_t)j * r + k];
                const float* a = A + (size_t)k * C;
                for (int i = 0; i < C; i++) row[i] += b * a[i];
            }
            float sum = 0.0f;
            for (int i = 0; i < C; i++) {
                const float v = wj[i] + scale * row[i];
                sum += v * v;
            }
            norm[j] = std::sqrt(sum);
        }
    }
}

void dora_forward(float* y, const float* z, const float* m, const float* norm, const float* bias, const float* add,
                  int N, int OC) {
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int j = 0; j < OC; j++) {
            const size_t i = (size_t)n * OC + j;
            y[i] = (add ? add[i] : 0.0f) + m[j] / norm[j] * z[i] + (bias ? bias[j] : 0.0f);
        }
}

// Threads split the columns: each owns its slice of dm and sums its rows in order (deterministic).
void dora_backward(float* dz, float* dm, const float* dy, const float* z, const float* m, const float* norm, int N,
                   int OC) {
    #pragma omp parallel for schedule(static)
    for (int j0 = 0; j0 < OC; j0 += 16) {
        const int j1 = j0 + 16 < OC ? j0 + 16 : OC;
        float acc[16] = {};
        for (int n = 0; n < N; n++)
            for (int j = j0; j < j1; j++) {
                const size_t i = (size_t)n * OC + j;
                const float g = dy[i];
                acc[j - j0] += g * z[i];
                dz[i] = m[j] / norm[j] * g;
            }
        for (int j = j0; j < j1; j++) dm[j] += acc[j - j0] / norm[j];
    }
}

}  // namespace cpu

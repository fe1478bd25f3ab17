// AdamW (Loshchilov & Hutter 2019) with decoupled weight decay, and the squared gradient norm used
// for clipping by global norm.
#include <cmath>
#include <vector>

#include "kernels/kernels.h"

namespace cpu {

void adamw_update(float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, float grad_scale, int t) {
    float bc1 = 1.0f - std::pow(beta1, (float)t), bc2 = 1.0f - std::pow(beta2, (float)t);
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * grad_scale;
        m[i] = beta1 * m[i] + (1.0f - beta1) * gi;
        v[i] = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        float mhat = m[i] / bc1, vhat = v[i] / bc2;
        p[i] -= lr * (mhat / (std::sqrt(vhat) + eps) + weight_decay * p[i]);
    }
}

double sum_squares(const float* g, size_t n) {
    // Fixed-size chunks summed in index order: the result does not depend on the thread count.
    const size_t chunk = 1 << 14;
    size_t nchunks = (n + chunk - 1) / chunk;
    std::vector<double> part(nchunks);
    #pragma omp parallel for schedule(static)
    for (size_t c = 0; c < nchunks; c++) {
        double s = 0.0;
        size_t end = std::min(n, (c + 1) * chunk);
        for (size_t i = c * chunk; i < end; i++) s += (double)g[i] * g[i];
        part[c] = s;
    }
    double total = 0.0;
    for (double s : part) total += s;
    return total;
}

}  // namespace cpu

// Weighted token-level cross-entropy on a chunk of logits, fused with its gradient.
//   nll_i = logsumexp(z_i) − z_i[y_i];   dL/dz_i = (softmax(z_i) − onehot(y_i)) · w_i · grad_scale
// grad_scale is 1 / (total loss weight of the whole accumulated batch), so micro-batches add up to
// exactly the gradient of the batch mean. Rows with w_i = 0 (padding, masked prompt) get zero gradient.
#include <cmath>

#include "kernels/cpu/exp.h"
#include "kernels/kernels.h"

namespace cpu {

void crossentropy_forward_backward(float* logits, float* nll, const int32_t* targets, const float* weights, int n,
                                   int V, float grad_scale) {
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        float* z = logits + (size_t)i * V;
        float mx = -INFINITY;
        #pragma omp simd reduction(max : mx)
        for (int j = 0; j < V; j++) mx = std::max(mx, z[j]);
        float sum = 0.0f;
        #pragma omp simd reduction(+ : sum)
        for (int j = 0; j < V; j++) sum += exp_fast(z[j] - mx);
        float lse = mx + std::log(sum);
        nll[i] = lse - z[targets[i]];
        if (grad_scale != 0.0f) {
            float g = weights[i] * grad_scale;
            #pragma omp simd
            for (int j = 0; j < V; j++) z[j] = exp_fast(z[j] - lse) * g;
            z[targets[i]] -= g;
        }
    }
}

}  // namespace cpu

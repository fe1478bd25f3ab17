// Rotary position embedding in Hugging Face's "rotate-half" layout: the pair rotated together is
// (x[i], x[i + hd/2]), not (x[2i], x[2i+1]) as in the original paper / llama.cpp.
//   θ_i = pos · inv_freq_i;  y[i] = x[i]cosθ − x[i+hd/2]sinθ;  y[i+hd/2] = x[i+hd/2]cosθ + x[i]sinθ
// The rotation is orthogonal, so the backward is the inverse rotation (θ → −θ).
// inv_freq comes from rope_inv_freq (model/config.cpp: theta^(−2i/hd), rescaled for llama3), as
// transformers computes it, and the angle is the same FP32 product: this step matches the reference
// to the last bit wherever the frequency table does (see rope_inv_freq).
#include <cmath>

#include "kernels/kernels.h"

namespace cpu {

static void rope_rotate(float* x, const int32_t* pos, int N, int n_heads, int hd, const float* inv_freq, float sign) {
    int half = hd / 2;
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        for (int i = 0; i < half; i++) {
            float ang = (float)pos[n] * inv_freq[i];
            float c = std::cos(ang), s = sign * std::sin(ang);
            for (int h = 0; h < n_heads; h++) {
                float* v = x + ((size_t)n * n_heads + h) * hd;
                float a = v[i], b = v[i + half];
                v[i] = a * c - b * s;
                v[i + half] = b * c + a * s;
            }
        }
    }
}

void rope_forward(float* x, const int32_t* pos, int N, int n_heads, int head_dim, const float* inv_freq) {
    rope_rotate(x, pos, N, n_heads, head_dim, inv_freq, 1.0f);
}

void rope_backward(float* dx, const int32_t* pos, int N, int n_heads, int head_dim, const float* inv_freq) {
    rope_rotate(dx, pos, N, n_heads, head_dim, inv_freq, -1.0f);
}

}  // namespace cpu

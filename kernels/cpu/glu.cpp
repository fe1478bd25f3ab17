// The gated MLP's activation (Shazeer 2020): h = act(g) · u, with act SiLU (SwiGLU: LLaMA, Qwen,
// SmolLM) or GELU's tanh approximation (GeGLU: Gemma).
//   silu(g) = g·σ(g)                          silu'(g) = σ(g)·(1 + g·(1 − σ(g)))
//   gelu(g) = g/2·(1 + t), t = tanh(k0·(g + k1·g³))
//                                             gelu'(g) = (1 + t)/2 + g/2·(1 − t²)·k0·(1 + 3·k1·g²)
// with k0 = sqrt(2/π), k1 = 0.044715 (PyTorch's gelu(approximate="tanh")). dh/du = act(g).
#include "kernels/cpu/exp.h"
#include "kernels/kernels.h"

namespace cpu {
namespace {

constexpr float kGeluK0 = 0.7978845608028654f, kGeluK1 = 0.044715f;

// act(g) and act'(g) of one element.
template <int ACT>
inline void activation(float g, float& a, float& da) {
    if (ACT == GLU_SILU) {
        float s = 1.0f / (1.0f + exp_fast(-g));
        a = g * s;
        da = s * (1.0f + g * (1.0f - s));
    } else {
        float t = tanh_fast(kGeluK0 * (g + kGeluK1 * g * g * g));
        a = 0.5f * g * (1.0f + t);
        da = 0.5f * (1.0f + t) + 0.5f * g * (1.0f - t * t) * kGeluK0 * (1.0f + 3.0f * kGeluK1 * g * g);
    }
}

template <int ACT>
void forward(float* h, const float* gate, const float* up, size_t N) {
    #pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < N; i++) {
        float a, da;
        activation<ACT>(gate[i], a, da);
        h[i] = a * up[i];
    }
}

template <int ACT>
void backward(float* dgate, float* dup, const float* dh, const float* gate, const float* up, size_t N) {
    #pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < N; i++) {
        float a, da;
        activation<ACT>(gate[i], a, da);
        dgate[i] = dh[i] * up[i] * da;
        dup[i] = dh[i] * a;
    }
}

}  // namespace

void glu_forward(float* h, const float* gate, const float* up, size_t N, int act) {
    if (act == GLU_SILU) forward<GLU_SILU>(h, gate, up, N);
    else forward<GLU_GELU_TANH>(h, gate, up, N);
}

void glu_backward(float* dgate, float* dup, const float* dh, const float* gate, const float* up, size_t N, int act) {
    if (act == GLU_SILU) backward<GLU_SILU>(dgate, dup, dh, gate, up, N);
    else backward<GLU_GELU_TANH>(dgate, dup, dh, gate, up, N);
}

}  // namespace cpu

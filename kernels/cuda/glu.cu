// The gated MLP's activation: h = act(g) · u with act SiLU (SwiGLU) or GELU's tanh approximation
// (GeGLU, Gemma); the formulas and their derivatives are in kernels/cpu/glu.cpp, computed here in the
// same order with the precise expf/tanhf. Elementwise, one thread per 8 elements (128-bit BF16
// accesses when aligned); the activation is a template parameter, so each kernel is straight-line.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/packed.cuh"

namespace cuda {

constexpr int kThreads = 256;
constexpr float kGeluK0 = 0.7978845608028654f, kGeluK1 = 0.044715f;

// act(g) and act'(g) of one element.
template <int ACT>
__device__ inline void activation(float g, float& a, float& da) {
    if (ACT == GLU_SILU) {
        float s = 1.0f / (1.0f + expf(-g));
        a = g * s;
        da = s * (1.0f + g * (1.0f - s));
    } else {
        float t = tanhf(kGeluK0 * (g + kGeluK1 * g * g * g));
        a = 0.5f * g * (1.0f + t);
        da = 0.5f * (1.0f + t) + 0.5f * g * (1.0f - t * t) * kGeluK0 * (1.0f + 3.0f * kGeluK1 * g * g);
    }
}

template <int ACT>
__global__ void glu_forward_kernel(bf16* h, const bf16* gate, const bf16* up, size_t N, bool vec) {
    size_t i = 8 * ((size_t)blockIdx.x * blockDim.x + threadIdx.x);
    if (i >= N) return;
    float g[8], u[8], y[8];
    load8(g, gate, i, N, vec);
    load8(u, up, i, N, vec);
    #pragma unroll
    for (int k = 0; k < 8; k++) {
        float a, da;
        activation<ACT>(g[k], a, da);
        y[k] = a * u[k];
    }
    store8(h, y, i, N, vec);
}

void glu_forward(bf16* h, const bf16* gate, const bf16* up, size_t N, int act) {
    if (N == 0) return;
    bool vec = aligned16(h) && aligned16(gate) && aligned16(up);
    auto kernel = act == GLU_SILU ? glu_forward_kernel<GLU_SILU> : glu_forward_kernel<GLU_GELU_TANH>;
    kernel<<<ceil_div(N, 8 * kThreads), kThreads>>>(h, gate, up, N, vec);
    CUDA_LAUNCH_CHECK();
}

// All inputs of a chunk are loaded before anything is stored, so dgate/dup may alias dh, gate or up.
template <int ACT>
__global__ void glu_backward_kernel(bf16* dgate, bf16* dup, const bf16* dh, const bf16* gate, const bf16* up, size_t N,
                                    bool vec) {
    size_t i = 8 * ((size_t)blockIdx.x * blockDim.x + threadIdx.x);
    if (i >= N) return;
    float d[8], g[8], u[8], dg[8], du[8];
    load8(d, dh, i, N, vec);
    load8(g, gate, i, N, vec);
    load8(u, up, i, N, vec);
    #pragma unroll
    for (int k = 0; k < 8; k++) {
        float a, da;
        activation<ACT>(g[k], a, da);
        dg[k] = d[k] * u[k] * da;
        du[k] = d[k] * a;
    }
    store8(dgate, dg, i, N, vec);
    store8(dup, du, i, N, vec);
}

void glu_backward(bf16* dgate, bf16* dup, const bf16* dh, const bf16* gate, const bf16* up, size_t N, int act) {
    if (N == 0) return;
    bool vec = aligned16(dgate) && aligned16(dup) && aligned16(dh) && aligned16(gate) && aligned16(up);
    auto kernel = act == GLU_SILU ? glu_backward_kernel<GLU_SILU> : glu_backward_kernel<GLU_GELU_TANH>;
    kernel<<<ceil_div(N, 8 * kThreads), kThreads>>>(dgate, dup, dh, gate, up, N, vec);
    CUDA_LAUNCH_CHECK();
}

}  // namespace cuda

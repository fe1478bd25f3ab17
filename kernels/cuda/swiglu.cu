// SwiGLU gate: h = silu(g) · u, silu(g) = g·σ(g);  dh/dg = u·σ(g)·(1 + g·(1 − σ(g))),  dh/du = silu(g).
// Elementwise, one thread per 8 elements (128-bit BF16 accesses when aligned). Same formulas and
// operation order as kernels/cpu/swiglu.cpp, with the precise expf.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/packed.cuh"

namespace cuda {

constexpr int kThreads = 256;

__global__ void swiglu_forward_kernel(bf16* h, const bf16* gate, const bf16* up, size_t N, bool vec) {
    size_t i = 8 * ((size_t)blockIdx.x * blockDim.x + threadIdx.x);
    if (i >= N) return;
    float g[8], u[8], y[8];
    load8(g, gate, i, N, vec);
    load8(u, up, i, N, vec);
    #pragma unroll
    for (int k = 0; k < 8; k++) {
        float s = 1.0f / (1.0f + expf(-g[k]));
        y[k] = g[k] * s * u[k];
    }
    store8(h, y, i, N, vec);
}

void swiglu_forward(bf16* h, const bf16* gate, const bf16* up, size_t N) {
    if (N == 0) return;
    bool vec = aligned16(h) && aligned16(gate) && aligned16(up);
    swiglu_forward_kernel<<<ceil_div(N, 8 * kThreads), kThreads>>>(h, gate, up, N, vec);
    CUDA_LAUNCH_CHECK();
}

// All inputs of a chunk are loaded before anything is stored, so dgate/dup may alias dh, gate or up.
__global__ void swiglu_backward_kernel(bf16* dgate, bf16* dup, const bf16* dh, const bf16* gate, const bf16* up,
                                       size_t N, bool vec) {
    size_t i = 8 * ((size_t)blockIdx.x * blockDim.x + threadIdx.x);
    if (i >= N) return;
    float d[8], g[8], u[8], dg[8], du[8];
    load8(d, dh, i, N, vec);
    load8(g, gate, i, N, vec);
    load8(u, up, i, N, vec);
    #pragma unroll
    for (int k = 0; k < 8; k++) {
        float s = 1.0f / (1.0f + expf(-g[k]));
        dg[k] = d[k] * u[k] * s * (1.0f + g[k] * (1.0f - s));
        du[k] = d[k] * g[k] * s;
    }
    store8(dgate, dg, i, N, vec);
    store8(dup, du, i, N, vec);
}

void swiglu_backward(bf16* dgate, bf16* dup, const bf16* dh, const bf16* gate, const bf16* up, size_t N) {
    if (N == 0) return;
    bool vec = aligned16(dgate) && aligned16(dup) && aligned16(dh) && aligned16(gate) && aligned16(up);
    swiglu_backward_kernel<<<ceil_div(N, 8 * kThreads), kThreads>>>(dgate, dup, dh, gate, up, N, vec);
    CUDA_LAUNCH_CHECK();
}

}  // namespace cuda

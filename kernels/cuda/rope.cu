// Rotary position embedding, Hugging Face "rotate-half" layout, in place on x[N, n_heads, head_dim]:
//   θ_i = pos · inv_freq_i,  inv_freq_i = 1 / theta^(2i/hd), as the model's RoPE scaling (llama3,
//   linear) or its layer's local theta makes it (the host's table, kernels/cpu/rope.cpp)
//   y[i] = x[i]cosθ_i − x[i+hd/2]sinθ_i,  y[i+hd/2] = x[i+hd/2]cosθ_i + x[i]sinθ_i   (i < hd/2)
// The backward is the inverse rotation (sin → −sin). Matches kernels/cpu/rope.cpp: the same host
// table of inv_freq (rope_inv_freq), passed by value, and the same FP32 angle product. Only sincosf
// (CUDA's precise version, ≤ 2 ulp) may differ from the host's sinf/cosf in the last bits.
#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/packed.cuh"
#include "model/util.h"

namespace cuda {

constexpr int kMaxHalf = 256;  // head_dim up to 512
struct InvFreq {
    float v[kMaxHalf];  // passed by value as a kernel argument (1 KB): no device state to keep in sync
};

// One block per token n. Its threads first compute the token's hd/2 (cos, sin) pairs into shared
// memory, once for all heads, then take (head, 8-wide chunk of i) work items: each loads x[i..i+8)
// and x[i+half..i+half+8) of one head (128-bit when hd % 16 == 0), rotates, and stores them back.
// An odd head_dim leaves its last element alone, as the CPU does (rows are hd apart, not 2·half).
__global__ void rope_kernel(bf16* x, const int32_t* pos, int n_heads, int hd, float sign, InvFreq f, bool vec) {
    __shared__ float cs[kMaxHalf], sn[kMaxHalf];
    int n = blockIdx.x, half = hd / 2;
    float p = (float)pos[n];
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float s, c;
        sincosf(p * f.v[i], &s, &c);
        cs[i] = c;
        sn[i] = sign * s;
    }
    __syncthreads();
    int chunks = (half + 7) / 8;
    for (int t = threadIdx.x; t < n_heads * chunks; t += blockDim.x) {
        int h = t / chunks, i0 = 8 * (t % chunks);
        bf16* v = x + ((size_t)n * n_heads + h) * hd;
        float a[8], b[8], ya[8], yb[8];
        load8(a, v, i0, half, vec);
        load8(b, v + half, i0, half, vec);
        #pragma unroll
        for (int k = 0; k < 8; k++) {
            int i = min(i0 + k, half - 1);  // lanes past half are not stored; keep the table read in bounds
            float c = cs[i], s = sn[i];
            ya[k] = a[k] * c - b[k] * s;
            yb[k] = b[k] * c + a[k] * s;
        }
        store8(v, ya, i0, half, vec);
        store8(v + half, yb, i0, half, vec);
    }
}

static void rope(bf16* x, const int32_t* pos, int N, int n_heads, int hd, const float* inv_freq, float sign) {
    if (N <= 0 || n_heads <= 0 || hd < 2) return;
    if (hd / 2 > kMaxHalf) fail("rope: head_dim %d is larger than the CUDA kernel's limit of %d", hd, 2 * kMaxHalf);
    InvFreq f;
    std::copy(inv_freq, inv_freq + hd / 2, f.v);
    bool vec = hd % 16 == 0 && aligned16(x);
    rope_kernel<<<N, 128>>>(x, pos, n_heads, hd, sign, f, vec);
    CUDA_LAUNCH_CHECK();
}

void rope_forward(bf16* x, const int32_t* pos, int N, int n_heads, int head_dim, const float* inv_freq) {
    rope(x, pos, N, n_heads, head_dim, inv_freq, 1.0f);
}

void rope_backward(bf16* dx, const int32_t* pos, int N, int n_heads, int head_dim, const float* inv_freq) {
    rope(dx, pos, N, n_heads, head_dim, inv_freq, -1.0f);
}

}  // namespace cuda

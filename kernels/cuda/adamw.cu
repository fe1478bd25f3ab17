// AdamW on the FP32 masters (with FP32 or 8-bit moments), and the squared gradient norm for clipping.
#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/packed.cuh"
#include "kernels/cuda/quant8.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/kernels.h"
#include "kernels/nf4_tables.h"

namespace cuda {

constexpr int kThreads = 256;

// One thread per 8 parameters (128-bit accesses when every array is aligned). The update is
// kernels/cpu/adamw.cpp's, term for term and in the same order; the bias corrections come from the
// host, computed by the same expression, so they are the CPU's bits. What can still differ is where
// each compiler fuses a multiply-add: about an ulp of p, m, v.
// The updated p also goes to p_compute (BF16) when there is one: rounded to nearest even, or, with
// a nonzero sr_key, stochastically (packed.cuh), so that the weights the kernels read are unbiased.
__global__ void adamw_kernel(float* p, bf16* p_compute, const float* g, float* m, float* v, size_t n, float lr,
                             float beta1, float beta2, float eps, float weight_decay, float grad_scale, float bc1,
                             float bc2, bool vec, uint64_t sr_key) {
    size_t i = 8 * ((size_t)blockIdx.x * blockDim.x + threadIdx.x);
    if (i >= n) return;
    float pv[8], gv[8], mv[8], vv[8];
    load8(pv, p, i, n, vec);
    load8(gv, g, i, n, vec);
    load8(mv, m, i, n, vec);
    load8(vv, v, i, n, vec);
    #pragma unroll
    for (int k = 0; k < 8; k++) {
        float gi = gv[k] * grad_scale;
        mv[k] = beta1 * mv[k] + (1.0f - beta1) * gi;
        vv[k] = beta2 * vv[k] + (1.0f - beta2) * gi * gi;
        float mhat = mv[k] / bc1, vhat = vv[k] / bc2;
        pv[k] -= lr * (mhat / (sqrtf(vhat) + eps) + weight_decay * pv[k]);
    }
    store8(p, pv, i, n, vec);
    store8(m, mv, i, n, vec);
    store8(v, vv, i, n, vec);
    if (p_compute) store8(p_compute, pv, i, n, vec, sr_key);
}

void adamw_update(float* p, bf16* p_compute, const float* g, float* m, float* v, size_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, float grad_scale, int t, uint64_t sr_key) {
    if (n == 0) return;
    float bc1 = 1.0f - std::pow(beta1, (float)t), bc2 = 1.0f - std::pow(beta2, (float)t);
    bool vec = aligned16(p) && aligned16(g) && aligned16(m) && aligned16(v) && (!p_compute || aligned16(p_compute));
    adamw_kernel<<<ceil_div(n, 8 * kThreads), kThreads>>>(p, p_compute, g, m, v, n, lr, beta1, beta2, eps,
                                                           weight_decay, grad_scale, bc1, bc2, vec, sr_key);
    CUDA_LAUNCH_CHECK();
}

// ---- 8-bit moments (kernels/cpu/adamw.cpp, adamw8bit_update) ----
//
// One CUDA block of kAdam8Block threads per quantization block, a thread per parameter: decode m and
// v, the FP32 update as adamw_kernel's, the block's two new absmax values by max reductions, encode
// against them. The maps sit in shared memory (a code is a data-dependent address; the binary search
// reads 9 entries a thread). A step moves 4 + 4 + 1 + 1 (+ 2 for the BF16 copy) + 4 (p written) bytes
// a parameter where the FP32 moments move 8 more: memory-bound like adamw_kernel.
__device__ float g_adam8_smap[256], g_adam8_umap[256];  // dynamic_map_values(true / false)

static void upload_adam8_maps() {
    static const bool done = [] {
        const std::array<float, 256> s = dynamic_map_values(true), u = dynamic_map_values(false);
        CUDA_CHECK(cudaMemcpyToSymbol(g_adam8_smap, s.data(), sizeof(float) * 256));
        CUDA_CHECK(cudaMemcpyToSymbol(g_adam8_umap, u.data(), sizeof(float) * 256));
        return true;
    }();
    (void)done;
}

__global__ void adamw8bit_kernel(float* p, bf16* p_compute, const float* g, uint8_t* m, uint8_t* v, float* absmax_m,
                                 float* absmax_v, size_t n, float lr, float beta1, float beta2, float eps,
                                 float weight_decay, float grad_scale, float bc1, float bc2, uint64_t sr_key) {
    __shared__ float smap[256], umap[256];
    smap[threadIdx.x] = g_adam8_smap[threadIdx.x];
    umap[threadIdx.x] = g_adam8_umap[threadIdx.x];
    __syncthreads();
    const size_t b = blockIdx.x, i = b * kAdam8Block + threadIdx.x;
    const bool in = i < n;
    float mi = 0.0f, vi = 0.0f;
    if (in) {
        // __fmul_rn: the decoded moment is rounded on its own, as the CPU's product is
        float gi = g[i] * grad_scale;
        mi = __fmul_rn(smap[m[i]], absmax_m[b]), vi = __fmul_rn(umap[v[i]], absmax_v[b]);
        mi = beta1 * mi + (1.0f - beta1) * gi;
        vi = beta2 * vi + (1.0f - beta2) * gi * gi;
        float mhat = mi / bc1, vhat = vi / bc2, pi = p[i];
        pi -= lr * (mhat / (sqrtf(vhat) + eps) + weight_decay * pi);
        p[i] = pi;
        if (p_compute)
            p_compute[i] = sr_key ? bf16_round_stochastic(pi, (uint32_t)hash64(sr_key, i)) : __float2bfloat16_rn(pi);
    }
    // every thread has read the block's old absmax before these barriers, so thread 0 may replace it
    const float am = block_reduce<MaxOp>(in ? abs_for_max(mi) : 0.0f);
    const float av = block_reduce<MaxOp>(in ? abs_for_max(vi) : 0.0f);
    if (threadIdx.x == 0) absmax_m[b] = am, absmax_v[b] = av;
    if (in) {
        m[i] = dynamic_code(__fmul_rn(mi, inv_absmax(am)), smap);
        v[i] = dynamic_code(__fmul_rn(vi, inv_absmax(av)), umap);
    }
}

void adamw8bit_update(float* p, bf16* p_compute, const float* g, uint8_t* m, uint8_t* v, float* absmax_m,
                      float* absmax_v, size_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                      float grad_scale, int t, uint64_t sr_key) {
    if (n == 0) return;
    upload_adam8_maps();
    float bc1 = 1.0f - std::pow(beta1, (float)t), bc2 = 1.0f - std::pow(beta2, (float)t);
    adamw8bit_kernel<<<ceil_div(n, kAdam8Block), kAdam8Block>>>(p, p_compute, g, m, v, absmax_m, absmax_v, n, lr, beta1,
                                                                beta2, eps, weight_decay, grad_scale, bc1, bc2, sr_key);
    CUDA_LAUNCH_CHECK();
}

// Σ g², deterministic in two passes. Pass 1: a fixed number of blocks (a function of n only, never
// of the device) stride over the array in 8-element chunks; each thread sums its squares in double
// (each (double)g·g is exact, so only the additions round), the block reduces its threads in a fixed
// tree, and writes one partial. Pass 2: the host adds the partials in block order. The order differs
// from the CPU's (chunks of 16384 in index order), so the two agree to double rounding (~1e-16
// relative), not bit for bit.
constexpr int kSumMaxBlocks = 1024;

__global__ void sum_squares_kernel(double* part, const float* g, size_t n, bool vec) {
    double s = 0.0;
    size_t stride = 8 * (size_t)gridDim.x * blockDim.x;
    for (size_t i = 8 * ((size_t)blockIdx.x * blockDim.x + threadIdx.x); i < n; i += stride) {
        float gv[8];
        load8(gv, g, i, n, vec);  // zeros past n
        #pragma unroll
        for (int k = 0; k < 8; k++) s += (double)gv[k] * gv[k];
    }
    s = block_reduce<SumOp>(s);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

double sum_squares(const float* g, size_t n) {
    if (n == 0) return 0.0;
    int blocks = (int)std::min<size_t>(ceil_div(n, 8 * kThreads), kSumMaxBlocks);
    double* part = (double*)cuda_scratch(Scratch::reduce, blocks * sizeof(double));
    sum_squares_kernel<<<blocks, kThreads>>>(part, g, n, aligned16(g));
    CUDA_LAUNCH_CHECK();
    std::vector<double> host(blocks);
    CUDA_CHECK(cudaMemcpy(host.data(), part, blocks * sizeof(double), cudaMemcpyDeviceToHost));
    double total = 0.0;
    for (double s : host) total += s;
    return total;
}

}  // namespace cuda

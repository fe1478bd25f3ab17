// AdamW on the FP32 masters, and the squared gradient norm for clipping.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/packed.cuh"
#include "kernels/cuda/reduce.cuh"

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

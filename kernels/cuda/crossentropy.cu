// Weighted cross-entropy fused with its gradient, on a chunk of n rows of logits[n, V] (BF16):
//   nll_i = logsumexp(z_i) − z_i[y_i]             (FP32, from the BF16 logits)
//   z_i ← (softmax(z_i) − onehot(y_i)) · w_i · grad_scale   (in place, BF16), when grad_scale != 0
// As in kernels/cpu/crossentropy.cpp: rows with w_i = 0 still get their nll, and their gradient is
// written as exp(·)·0 = 0; the gradient is exp(z − lse)·g, minus g at the target, rounded once.
#include <cfloat>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/packed.cuh"
#include "kernels/cuda/reduce.cuh"

namespace cuda {

// One block per row, two passes over it.
// Pass 1 (online softmax): each thread walks its 8-wide chunks t, t+blockDim, ... keeping a running
// max m and a sum s of exp(z − m), rescaled when m grows. The block then reduces the maxima to M and
// the sums, each rescaled by exp(m − M), to S: lse = M + log S. m starts at −FLT_MAX, not −inf, so
// −inf logits (masked entries) add exp(−inf) = 0 instead of exp(−inf + inf) = NaN.
// Pass 2 writes the gradient over the row.
// exp is __expf (one multiply and one MUFU.EX2; relative error a few 1e-6 over the range that
// matters): the accurate expf is a dozen instructions, and with two exps per logit the kernel was
// issue-bound rather than memory-bound (2.2-2.4 TB/s on an H200).
// Each thread keeps kBatch 16-byte loads in flight (a loop of load-then-use kept one: 2.1 TB/s on an
// H100 at V 49152, 1.8 at V 128256). The batch takes the kernel from 32 to ~54 registers, so one
// 1024-thread block per SM instead of two: 64 KB of loads in flight per SM instead of 32, and at
// most one row per SM (132 × 256 KB at V 128256, within the 50 MB L2) for the second pass to re-read
// from L2 rather than from memory.
constexpr int kThreads = 1024, kBatch = 4;

// The raw chunks j0, j0 + blockDim, ... (kBatch of them) of a row, ahead of their use.
__device__ inline void load_batch(uint4 (&raw)[kBatch], const bf16* z, int j0, int chunks, int V, bool vec) {
    #pragma unroll
    for (int b = 0; b < kBatch; b++) {
        const int j = j0 + b * (int)blockDim.x;
        if (j < chunks) prefetch_raw8(raw[b], z, 8 * j, V, vec);
    }
}

// __launch_bounds__: a 1024-thread block needs <= 64 registers per thread; without the bound a
// compiler (or the driver's JIT of the compute_80 PTX) may use more and the launch then fails.
__global__ void __launch_bounds__(kThreads)
    crossentropy_kernel(bf16* logits, float* nll, const int32_t* targets, const float* weights, int V, float grad_scale,
                        bool vec) {
    int row = blockIdx.x;
    bf16* z = logits + (size_t)row * V;
    int target = targets[row];
    // Read before any thread can overwrite the row: pass 2 starts after the reductions' barriers.
    float zt = __bfloat162float(z[target]);
    int chunks = (V + 7) / 8;
    float m = -FLT_MAX, s = 0.0f;
    // Chunks j0, j0 + blockDim, ..., kBatch of them: all their loads are issued before the first is
    // used, then they are taken in the order a one-chunk loop would take them (same bits).
    for (int j0 = threadIdx.x; j0 < chunks; j0 += kBatch * blockDim.x) {
        uint4 raw[kBatch] = {};
        load_batch(raw, z, j0, chunks, V, vec);
        #pragma unroll
        for (int b = 0; b < kBatch; b++) {
            const int j = j0 + b * (int)blockDim.x;
            if (j >= chunks) break;
            float v[8], mc = -INFINITY;
            unpack_or_load8(v, raw[b], z, 8 * j, V, vec);
            #pragma unroll
            for (int k = 0; k < 8; k++) {
                if (8 * j + k >= V) v[k] = -INFINITY;  // past the row's end: no contribution
                mc = fmaxf(mc, v[k]);
            }
            float mn = fmaxf(m, mc);
            s *= __expf(m - mn);
            #pragma unroll
            for (int k = 0; k < 8; k++) s += __expf(v[k] - mn);
            m = mn;
        }
    }
    float M = block_reduce<MaxOp>(m);
    float S = block_reduce<SumOp>(s * __expf(m - M));
    float lse = M + logf(S);
    if (threadIdx.x == 0) nll[row] = lse - zt;
    if (grad_scale == 0.0f) return;
    float g = weights[row] * grad_scale;
    for (int j0 = threadIdx.x; j0 < chunks; j0 += kBatch * blockDim.x) {
        uint4 raw[kBatch] = {};
        load_batch(raw, z, j0, chunks, V, vec);
        #pragma unroll
        for (int b = 0; b < kBatch; b++) {
            const int j = j0 + b * (int)blockDim.x;
            if (j >= chunks) break;
            float v[8];
            unpack_or_load8(v, raw[b], z, 8 * j, V, vec);
            #pragma unroll
            for (int k = 0; k < 8; k++) {
                v[k] = __expf(v[k] - lse) * g;
                if (8 * j + k == target) v[k] -= g;
            }
            store8(z, v, 8 * j, V, vec);
        }
    }
}

void crossentropy_forward_backward(bf16* logits, float* nll, const int32_t* targets, const float* weights, int n, int V,
                                   float grad_scale) {
    if (n <= 0) return;
    bool vec = V % 8 == 0 && aligned16(logits);
    crossentropy_kernel<<<n, kThreads>>>(logits, nll, targets, weights, V, grad_scale, vec);
    CUDA_LAUNCH_CHECK();
}

}  // namespace cuda

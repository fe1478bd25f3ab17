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
// H100 at V 49152, 1.8 at V 128256), which takes it from 32 to 48-64 registers.
// The block size is a trade between two things (H100, n = 512-1024 rows):
// - the second pass re-reads the row from L2, so the rows in progress at once must fit there:
//   at V 128256 (256 KB a row) one 1024-thread block per SM (132 rows, 34 MB of the 50 MB L2) ran
//   at 2.13-2.17 TB/s, and two 512-thread blocks per SM (67 MB of rows) at 1.88-1.95;
// - while a block waits at its reductions' barriers another can stream: at V 49152 (96 KB a row)
//   two 512-thread blocks per SM ran at 2.23-2.33 TB/s, one 1024-thread block at 1.78-1.87, and at
//   V 32000 2.24-2.53 against 1.65-1.82.
// So rows up to kSmallRow logits take two 512-thread blocks per SM, longer ones one 1024-thread
// block; chosen by V alone, so a result's bits depend only on the shapes.
constexpr int kBatch = 4, kSmallRow = 65536;

// f(v, j) on each of this thread's 8-wide chunks j = t, t + kThreads, ... of a row, in that order:
// kBatch of them at a time have all their loads issued before the first is used (the same values
// and order as a one-chunk loop, so the same bits).
template <int kThreads, class F>
__device__ __forceinline__ void for_each_chunk(const bf16* z, int chunks, int V, bool vec, F&& f) {
    for (int j0 = threadIdx.x; j0 < chunks; j0 += kBatch * kThreads) {
        uint4 raw[kBatch] = {};
        #pragma unroll
        for (int b = 0; b < kBatch; b++) {
            const int j = j0 + b * kThreads;
            if (j < chunks) prefetch_raw8(raw[b], z, 8 * j, V, vec);
        }
        #pragma unroll
        for (int b = 0; b < kBatch; b++) {
            const int j = j0 + b * kThreads;
            if (j >= chunks) break;
            float v[8];
            unpack_or_load8(v, raw[b], z, 8 * j, V, vec);
            f(v, j);
        }
    }
}

// __launch_bounds__: kThreads · kMinBlocks threads per SM cap the registers (64 for 1024 threads);
// without the bound a compiler (or the driver's JIT of the compute_80 PTX) may use more, and a
// 1024-thread launch then fails.
template <int kThreads, int kMinBlocks>
__global__ void __launch_bounds__(kThreads, kMinBlocks)
    crossentropy_kernel(bf16* logits, float* nll, const int32_t* targets, const float* weights, int V, float grad_scale,
                        bool vec) {
    int row = blockIdx.x;
    bf16* z = logits + (size_t)row * V;
    int target = targets[row];
    // Read before any thread can overwrite the row: pass 2 starts after the reductions' barriers.
    float zt = __bfloat162float(z[target]);
    int chunks = (V + 7) / 8;
    float m = -FLT_MAX, s = 0.0f;
    for_each_chunk<kThreads>(z, chunks, V, vec, [&](float (&v)[8], int j) {
        float mc = -INFINITY;
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
    });
    float M = block_reduce<MaxOp>(m);
    float S = block_reduce<SumOp>(s * __expf(m - M));
    float lse = M + logf(S);
    if (threadIdx.x == 0) nll[row] = lse - zt;
    if (grad_scale == 0.0f) return;
    float g = weights[row] * grad_scale;
    for_each_chunk<kThreads>(z, chunks, V, vec, [&](float (&v)[8], int j) {
        #pragma unroll
        for (int k = 0; k < 8; k++) {
            v[k] = __expf(v[k] - lse) * g;
            if (8 * j + k == target) v[k] -= g;
        }
        store8(z, v, 8 * j, V, vec);
    });
}

void crossentropy_forward_backward(bf16* logits, float* nll, const int32_t* targets, const float* weights, int n, int V,
                                   float grad_scale) {
    if (n <= 0) return;
    bool vec = V % 8 == 0 && aligned16(logits);
    if (V <= kSmallRow) crossentropy_kernel<512, 2><<<n, 512>>>(logits, nll, targets, weights, V, grad_scale, vec);
    else crossentropy_kernel<1024, 1><<<n, 1024>>>(logits, nll, targets, weights, V, grad_scale, vec);
    CUDA_LAUNCH_CHECK();
}

}  // namespace cuda

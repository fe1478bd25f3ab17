// RMSNorm, LLaMA style (no mean, no bias): y = x · r · w,  r = 1/sqrt(mean(x²) + eps).
// Backward, with g = dy ∘ w:  dx = r·g − x·r³·mean(g ∘ x),  dw = Σ_n dy ∘ x · r.
// Same formulas and operation order as kernels/cpu/rmsnorm.cpp; the sums over a row run in a tree,
// not left to right, so they agree with the CPU to FP32 rounding, not bit for bit.
#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/packed.cuh"
#include "kernels/cuda/reduce.cuh"

namespace cuda {

// One warp per row (8 rows per 256-thread block): lane l takes the 8-element chunks l, l+32, ...
// of the row, so a row needs only a warp reduction. The second pass re-reads x (from L1/L2) rather
// than keeping a row of unknown width in registers.
__global__ void rmsnorm_forward_kernel(bf16* out, float* rstd, const bf16* x, const bf16* w, int N, int C, float eps,
                                       bool vec) {
    int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (n >= N) return;  // whole warps leave together
    const bf16* xr = x + (size_t)n * C;
    int chunks = (C + 7) / 8;
    float ss = 0.0f;
    for (int j = lane; j < chunks; j += 32) {
        float xv[8];
        load8(xv, xr, 8 * j, C, vec);
        #pragma unroll
        for (int k = 0; k < 8; k++) ss += xv[k] * xv[k];
    }
    ss = warp_reduce<SumOp>(ss);
    float r = 1.0f / sqrtf(ss / (float)C + eps);
    bf16* o = out + (size_t)n * C;
    for (int j = lane; j < chunks; j += 32) {
        float xv[8], wv[8], ov[8];
        load8(xv, xr, 8 * j, C, vec);
        load8(wv, w, 8 * j, C, vec);
        #pragma unroll
        for (int k = 0; k < 8; k++) ov[k] = xv[k] * r * wv[k];
        store8(o, ov, 8 * j, C, vec);
    }
    if (lane == 0) rstd[n] = r;
}

void rmsnorm_forward(bf16* out, float* rstd, const bf16* x, const bf16* w, int N, int C, float eps) {
    if (N <= 0 || C <= 0) return;
    const int threads = 256;
    bool vec = C % 8 == 0 && aligned16(out) && aligned16(x) && aligned16(w);
    rmsnorm_forward_kernel<<<ceil_div(N, threads / 32), threads>>>(out, rstd, x, w, N, C, eps, vec);
    CUDA_LAUNCH_CHECK();
}

// The backward needs a sum over the row (for dx) and, for dw, a sum over all rows per column.
// One block at a time works on a row: thread t owns the row's 8-element chunks t, t+blockDim, ...
// (blockDim is sized to the row, see below), block-reduces the dot product, then updates dx.
// Blocks take rows n = blockIdx.x, blockIdx.x + gridDim.x, ... and, when dw is wanted, each thread
// adds dy·x·r for its own columns into the block's shared-memory partial dw (no two threads share a
// column: no synchronisation, no atomics). At the end each block writes its partial to
// part[blockIdx.x, :], and rmsnorm_dw_kernel adds the partials to dw in block order.
// The shared partial is stored transposed, sdw[k * chunks + j] for column 8j + k, so the 32 threads
// of a warp (consecutive j) touch 32 consecutive floats: no bank conflicts.
constexpr int kBackwardMaxThreads = 512;

__global__ void __launch_bounds__(kBackwardMaxThreads)
    rmsnorm_backward_kernel(bf16* dx, float* dw_part, const bf16* dout, const bf16* x, const bf16* w, const float* rstd,
                            int N, int C, bool vec) {
    extern __shared__ float sdw[];  // [8][chunks], only when dw_part
    int chunks = (C + 7) / 8;
    if (dw_part)
        for (int j = threadIdx.x; j < chunks; j += blockDim.x)
            for (int k = 0; k < 8; k++) sdw[k * chunks + j] = 0.0f;
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        const bf16* g = dout + (size_t)n * C;
        const bf16* xr = x + (size_t)n * C;
        bf16* d = dx + (size_t)n * C;
        float r = rstd[n], dot = 0.0f;
        for (int j = threadIdx.x; j < chunks; j += blockDim.x) {
            float gv[8], wv[8], xv[8];
            load8(gv, g, 8 * j, C, vec);
            load8(wv, w, 8 * j, C, vec);
            load8(xv, xr, 8 * j, C, vec);
            #pragma unroll
            for (int k = 0; k < 8; k++) dot += gv[k] * wv[k] * xv[k];
        }
        dot = block_reduce<SumOp>(dot);
        float kr = r * r * r * dot / (float)C;
        for (int j = threadIdx.x; j < chunks; j += blockDim.x) {
            float gv[8], wv[8], xv[8], dv[8];
            load8(gv, g, 8 * j, C, vec);
            load8(wv, w, 8 * j, C, vec);
            load8(xv, xr, 8 * j, C, vec);
            load8(dv, d, 8 * j, C, vec);
            #pragma unroll
            for (int k = 0; k < 8; k++) dv[k] += r * gv[k] * wv[k] - xv[k] * kr;
            store8(d, dv, 8 * j, C, vec);
            if (dw_part) {
                #pragma unroll
                for (int k = 0; k < 8; k++) sdw[k * chunks + j] += gv[k] * xv[k] * r;
            }
        }
    }
    if (dw_part)
        for (int j = threadIdx.x; j < chunks; j += blockDim.x)
            for (int k = 0; k < 8 && 8 * j + k < C; k++) dw_part[(size_t)blockIdx.x * C + 8 * j + k] = sdw[k * chunks + j];
}

// dw[c] += Σ_b part[b, c], b in order: one thread per column (coalesced across the warp).
__global__ void rmsnorm_dw_kernel(float* dw, const float* part, int nparts, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s = 0.0f;
    for (int b = 0; b < nparts; b++) s += part[(size_t)b * C + c];
    dw[c] += s;
}

// Fixed (device-independent) upper bound on blocks: every block takes >= 1 row, and the dw partials
// (blocks × C floats of scratch) stay small. The grid depends only on N, so the dw summation order,
// and hence its bits, depend only on the shapes.
constexpr int kBackwardMaxBlocks = 512;

void rmsnorm_backward(bf16* dx, float* dw, const bf16* dout, const bf16* x, const bf16* w, const float* rstd, int N,
                      int C) {
    if (N <= 0 || C <= 0) return;
    int chunks = (C + 7) / 8;
    // One chunk per thread up to C = 4096, then loop; at least a warp, at most 512 threads.
    int threads = std::min(kBackwardMaxThreads, std::max(32, (chunks + 31) / 32 * 32));
    int blocks = std::min(N, kBackwardMaxBlocks);
    bool vec = C % 8 == 0 && aligned16(dx) && aligned16(dout) && aligned16(x) && aligned16(w);
    float* part = nullptr;
    size_t smem = 0;
    if (dw) {
        part = (float*)cuda_scratch(Scratch::reduce, (size_t)blocks * C * sizeof(float));
        smem = (size_t)8 * chunks * sizeof(float);
        if (smem > 48 * 1024)  // beyond the default dynamic shared memory limit: opt in (C > 12288)
            CUDA_CHECK(cudaFuncSetAttribute(rmsnorm_backward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            (int)smem));
    }
    rmsnorm_backward_kernel<<<blocks, threads, smem>>>(dx, part, dout, x, w, rstd, N, C, vec);
    CUDA_LAUNCH_CHECK();
    if (dw) {
        rmsnorm_dw_kernel<<<ceil_div(C, 256), 256>>>(dw, part, blocks, C);
        CUDA_LAUNCH_CHECK();
    }
}

}  // namespace cuda

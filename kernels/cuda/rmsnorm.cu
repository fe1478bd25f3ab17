// RMSNorm, LLaMA style (no mean, no bias): y = x · r · w,  r = 1/sqrt(mean(x²) + eps), plus `add`
// when given (Gemma 3's post-norms: a branch's normalised output added to the residual stream in the
// same pass, y = add + x · r · w).
// Backward, with g = dy ∘ w:  dx = r·g − x·r³·mean(g ∘ x),  dw = Σ_n dy ∘ x · r.
// Same formulas and operation order as kernels/cpu/rmsnorm.cpp; the sums over a row run in a tree,
// not left to right, so they agree with the CPU to FP32 rounding, not bit for bit.
#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/packed.cuh"
#include "kernels/cuda/reduce.cuh"

namespace cuda {

// The arithmetic of one 8-element chunk, shared by every path of the kernels below so that they all
// compute the same thing in the same order. Forward: Σ x², r = 1/sqrt(mean + eps), out = x·r·w.
// Backward: Σ dy·w·x, kr = r³·Σ/C, dx += r·dy·w − x·kr and the dw partial += dy·x·r.
__device__ inline void add_squares8(float& ss, const float (&x)[8]) {
    #pragma unroll
    for (int k = 0; k < 8; k++) ss += x[k] * x[k];
}
__device__ inline void normalize8(float (&out)[8], const float (&x)[8], const float (&w)[8], float r) {
    #pragma unroll
    for (int k = 0; k < 8; k++) out[k] = x[k] * r * w[k];
}
// out += the chunk of `add` (a row of it) at i, when there is one: add + x·r·w, as the CPU orders it.
__device__ inline void add_residual8(float (&out)[8], const bf16* add, int i, int C, bool vec) {
    if (!add) return;
    float a[8];
    load8(a, add, i, C, vec);
    #pragma unroll
    for (int k = 0; k < 8; k++) out[k] = a[k] + out[k];
}
__device__ inline void add_dot8(float& dot, const float (&g)[8], const float (&w)[8], const float (&x)[8]) {
    #pragma unroll
    for (int k = 0; k < 8; k++) dot += g[k] * w[k] * x[k];
}
// sdw: the block's transposed dw partial (see the backward kernel), or null.
__device__ inline void backward8(float (&d)[8], float* sdw, int chunks, int j, const float (&g)[8], const float (&w)[8],
                                 const float (&x)[8], float r, float kr) {
    #pragma unroll
    for (int k = 0; k < 8; k++) d[k] += r * g[k] * w[k] - x[k] * kr;
    if (sdw) {
        #pragma unroll
        for (int k = 0; k < 8; k++) sdw[k * chunks + j] += g[k] * x[k] * r;
    }
}

// Two layouts, chosen by the row width alone (so the bits of a result depend only on the shapes):
//
// Rows of up to 1024 elements (128 chunks of 8): one warp per row, 8 rows per 256-thread block; lane
// l takes the chunks l, l+32, ... (at most CPL = 4 of them), so a row needs only a warp reduction.
// On the vector path the lane's chunks stay in registers as raw 16 bytes, all loaded before the first
// is used, and the scaling pass reads registers instead of x again. CPL = 0: any alignment, a loop
// and a second pass over x (from L1/L2); same arithmetic in the same order.
//
// Rows of up to 128 (16 chunks: the per-head QK norms of Qwen3 and others) on the vector path take
// L = 8 or 16 lanes a row (rmsnorm_short_row_lanes), 256 / L rows a block, one chunk a lane: a warp a
// row would leave half its lanes or more idle, and the GPU with half the loads in flight it could
// have (an H200 ran rows of 128 at 1.9 TB/s so). The sum is the same butterfly without its first
// steps, which only added the idle lanes' zeros: the same bits. Every lane runs the shuffles, those
// of a row past N with zeros.
//
// Wider rows, up to 16384 (rmsnorm_forward_rows_kernel, below): one block per row. Wider still
// (no model has them): this kernel's loop (CPL = 0), a warp per row.
template <int CPL, int L = 32>
__global__ void rmsnorm_forward_kernel(bf16* out, float* rstd, const bf16* x, const bf16* w, int N, int C, float eps,
                                       const bf16* add, bool vec) {
    static_assert(CPL > 0 || L == 32, "the loop for any alignment takes a warp a row");
    const int n = blockIdx.x * (blockDim.x / L) + threadIdx.x / L, lane = threadIdx.x % L;
    const bool row = n < N;
    if (L == 32 && !row) return;  // whole warps leave together
    const bf16* xr = x + (size_t)n * C;
    const bf16* ar = add ? add + (size_t)n * C : nullptr;
    bf16* o = out + (size_t)n * C;
    int chunks = (C + 7) / 8;
    float ss = 0.0f;
    if constexpr (CPL > 0) {  // vec and chunks <= L * CPL
        uint4 raw[CPL];
        #pragma unroll
        for (int i = 0; i < CPL; i++)
            if (row && lane + L * i < chunks) raw[i] = load_raw8(xr, 8 * (lane + L * i));
        #pragma unroll
        for (int i = 0; i < CPL; i++)
            if (row && lane + L * i < chunks) {
                float xv[8];
                unpack8(xv, raw[i]);
                add_squares8(ss, xv);
            }
        ss = warp_reduce<SumOp, L>(ss);
        float r = 1.0f / sqrtf(ss / (float)C + eps);
        #pragma unroll
        for (int i = 0; i < CPL; i++)
            if (row && lane + L * i < chunks) {
                const int j = lane + L * i;
                float xv[8], wv[8], ov[8];
                unpack8(xv, raw[i]);
                load8(wv, w, 8 * j, C, true);
                normalize8(ov, xv, wv, r);
                add_residual8(ov, ar, 8 * j, C, true);
                store8(o, ov, 8 * j, C, true);
            }
        if (row && lane == 0) rstd[n] = r;
    } else {
        for (int j = lane; j < chunks; j += 32) {
            float xv[8];
            load8(xv, xr, 8 * j, C, vec);
            add_squares8(ss, xv);
        }
        ss = warp_reduce<SumOp>(ss);
        float r = 1.0f / sqrtf(ss / (float)C + eps);
        for (int j = lane; j < chunks; j += 32) {
            float xv[8], wv[8], ov[8];
            load8(xv, xr, 8 * j, C, vec);
            load8(wv, w, 8 * j, C, vec);
            normalize8(ov, xv, wv, r);
            add_residual8(ov, ar, 8 * j, C, vec);
            store8(o, ov, 8 * j, C, vec);
        }
        if (lane == 0) rstd[n] = r;
    }
}

// Wide rows: thread t of a block owns the row's chunks t, t + blockDim, ... (CPT of them, blockDim
// about 256) and keeps them, and its chunks of w, as raw registers. The grid is persistent (as many
// blocks as fit on the GPU at once; the result does not depend on it: a row is one block's work) and
// each block takes rows n = blockIdx.x, blockIdx.x + gridDim.x, ...: the next row's loads are issued
// before this row's block reduction, so they are in flight while the block waits at its barriers and
// writes its outputs. A warp per row with the whole row in flight, each warp one row and then done,
// reached 2.30 TB/s on an H100 at C 4096 and 1.70 at C 8192 (it needs 95 registers, 2 blocks per SM);
// this layout 2.66-2.68 at both, and the same without the persistence (one block per row) 2.08-2.14.
template <int CPT>
__global__ void __launch_bounds__(512)
    rmsnorm_forward_rows_kernel(bf16* out, float* rstd, const bf16* x, const bf16* w, int N, int C, float eps,
                                const bf16* add, bool vec) {
    const int chunks = (C + 7) / 8;
    uint4 raw_w[CPT] = {}, raw_x[CPT] = {};
    auto chunk = [&](int c) { return (int)threadIdx.x + c * (int)blockDim.x; };
    auto prefetch_row = [&](int n) {
        if (n >= N) return;
        #pragma unroll
        for (int c = 0; c < CPT; c++)
            if (chunk(c) < chunks) prefetch_raw8(raw_x[c], x + (size_t)n * C, 8 * chunk(c), C, vec);
    };
    #pragma unroll
    for (int c = 0; c < CPT; c++)
        if (chunk(c) < chunks) prefetch_raw8(raw_w[c], w, 8 * chunk(c), C, vec);
    prefetch_row(blockIdx.x);
    // (Row pointers are formed where they are used: a row pointer held across the block reduction
    // took 14 more registers when it was tried, and a block fewer per SM.)
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        float xv[CPT][8], ss = 0.0f;
        #pragma unroll
        for (int c = 0; c < CPT; c++)
            if (chunk(c) < chunks) {
                unpack_or_load8(xv[c], raw_x[c], x + (size_t)n * C, 8 * chunk(c), C, vec);
                add_squares8(ss, xv[c]);
            }
        prefetch_row(n + gridDim.x);
        ss = block_reduce<SumOp>(ss);
        const float r = 1.0f / sqrtf(ss / (float)C + eps);
        #pragma unroll
        for (int c = 0; c < CPT; c++)
            if (chunk(c) < chunks) {
                float wv[8], ov[8];
                unpack_or_load8(wv, raw_w[c], w, 8 * chunk(c), C, vec);
                normalize8(ov, xv[c], wv, r);
                add_residual8(ov, add ? add + (size_t)n * C : nullptr, 8 * chunk(c), C, vec);
                store8(out + (size_t)n * C, ov, 8 * chunk(c), C, vec);
            }
        if (threadIdx.x == 0) rstd[n] = r;
    }
}

// As many blocks of `kernel` as are resident at once on this GPU (an occupancy query: a host-side
// computation, microseconds).
template <class Kernel>
int persistent_blocks(Kernel kernel, int threads) {
    static const int sms = [] {
        int device = 0, n = 0;
        CUDA_CHECK(cudaGetDevice(&device));
        CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
        return n;
    }();
    int per_sm = 0;
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, 0));
    return sms * std::max(per_sm, 1);
}

void rmsnorm_forward(bf16* out, float* rstd, const bf16* x, const bf16* w, int N, int C, float eps, const bf16* add) {
    if (N <= 0 || C <= 0) return;
    bool vec = C % 8 == 0 && aligned16(out) && aligned16(x) && aligned16(w) && (!add || aligned16(add));
    const int chunks = ceil_div(C, 8);
    if (chunks > 128 && chunks <= 4 * 512) {
        // Chunks per thread 1, 2 or 4: blocks of ~256 threads (measured best at C 2048, 4096, 8192).
        const int cpt = chunks <= 256 ? 1 : chunks <= 512 ? 2 : 4;
        const int threads = (int)ceil_div(ceil_div(chunks, cpt), 32) * 32;
        auto launch = [&](auto kernel) {
            const int blocks = std::min(N, persistent_blocks(kernel, threads));
            kernel<<<blocks, threads>>>(out, rstd, x, w, N, C, eps, add, vec);
        };
        if (cpt == 1) launch(rmsnorm_forward_rows_kernel<1>);
        else if (cpt == 2) launch(rmsnorm_forward_rows_kernel<2>);
        else launch(rmsnorm_forward_rows_kernel<4>);
    } else if (vec && chunks <= 16) {  // short rows: L lanes a row
        const int threads = 256, lanes = rmsnorm_short_row_lanes(C), blocks = ceil_div(N, threads / lanes);
        if (lanes == 8) rmsnorm_forward_kernel<1, 8><<<blocks, threads>>>(out, rstd, x, w, N, C, eps, add, vec);
        else rmsnorm_forward_kernel<1, 16><<<blocks, threads>>>(out, rstd, x, w, N, C, eps, add, vec);
    } else {
        const int threads = 256, blocks = ceil_div(N, threads / 32);
        auto launch = [&](auto kernel) { kernel<<<blocks, threads>>>(out, rstd, x, w, N, C, eps, add, vec); };
        if (vec && chunks <= 64) launch(rmsnorm_forward_kernel<2>);
        else if (vec && chunks <= 128) launch(rmsnorm_forward_kernel<4>);
        else launch(rmsnorm_forward_kernel<0>);
    }
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
// kOneChunk (C <= 8 · 512, every thread owns at most one chunk): the thread keeps its chunk of w for
// all rows, and its chunks of dy, x and dx from the dot product to the update, so a row is one
// round of loads (all in flight together) instead of two, issued while the previous row is being
// reduced; same arithmetic in the same order.
constexpr int kBackwardMaxThreads = 512;

template <bool kOneChunk>
__global__ void __launch_bounds__(kBackwardMaxThreads)
    rmsnorm_backward_kernel(bf16* dx, float* dw_part, const bf16* dout, const bf16* x, const bf16* w, const float* rstd,
                            int N, int C, bool vec) {
    extern __shared__ float sdw[];  // [8][chunks], only when dw_part
    int chunks = (C + 7) / 8;
    if (dw_part)
        for (int j = threadIdx.x; j < chunks; j += blockDim.x)
            for (int k = 0; k < 8; k++) sdw[k * chunks + j] = 0.0f;
    if constexpr (kOneChunk) {
        const int j = threadIdx.x;
        const bool mine = j < chunks;
        float wv[8] = {};
        if (mine) load8(wv, w, 8 * j, C, vec);
        // The next row's dy, x and dx are loaded (raw) before this row's block reduction, so they
        // arrive while the block waits at its barriers instead of after them.
        uint4 rg = {}, rx = {}, rd = {};
        auto prefetch = [&](int n) {
            if (!mine || n >= N) return;
            const size_t row = (size_t)n * C;
            prefetch_raw8(rg, dout + row, 8 * j, C, vec);
            prefetch_raw8(rx, x + row, 8 * j, C, vec);
            prefetch_raw8(rd, dx + row, 8 * j, C, vec);
        };
        prefetch(blockIdx.x);
        for (int n = blockIdx.x; n < N; n += gridDim.x) {
            const size_t row = (size_t)n * C;
            float gv[8] = {}, xv[8] = {}, dv[8] = {}, r = rstd[n], dot = 0.0f;
            if (mine) {
                unpack_or_load8(gv, rg, dout + row, 8 * j, C, vec);
                unpack_or_load8(xv, rx, x + row, 8 * j, C, vec);
                unpack_or_load8(dv, rd, dx + row, 8 * j, C, vec);
                add_dot8(dot, gv, wv, xv);
            }
            prefetch(n + gridDim.x);
            dot = block_reduce<SumOp>(dot);
            float kr = r * r * r * dot / (float)C;
            if (mine) {
                backward8(dv, dw_part ? sdw : nullptr, chunks, j, gv, wv, xv, r, kr);
                store8(dx + row, dv, 8 * j, C, vec);
            }
        }
    } else {  // any C: a loop over the chunks, x, dy and w read twice
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
                add_dot8(dot, gv, wv, xv);
            }
            dot = block_reduce<SumOp>(dot);
            float kr = r * r * r * dot / (float)C;
            for (int j = threadIdx.x; j < chunks; j += blockDim.x) {
                float gv[8], wv[8], xv[8], dv[8];
                load8(gv, g, 8 * j, C, vec);
                load8(wv, w, 8 * j, C, vec);
                load8(xv, xr, 8 * j, C, vec);
                load8(dv, d, 8 * j, C, vec);
                backward8(dv, dw_part ? sdw : nullptr, chunks, j, gv, wv, xv, r, kr);
                store8(d, dv, 8 * j, C, vec);
            }
        }
    }
    if (dw_part)
        for (int j = threadIdx.x; j < chunks; j += blockDim.x)
            for (int k = 0; k < 8 && 8 * j + k < C; k++) dw_part[(size_t)blockIdx.x * C + 8 * j + k] = sdw[k * chunks + j];
}

// Short rows (C <= 256, at most 32 chunks: the per-head QK norms of Qwen3 and Gemma 3, 128 and 256
// wide, 16 and 4 rows a token). The kernel above would give such a row one warp (half a warp at
// C 128), and its grid of at most 512 blocks only ~4 warps an SM: too few loads in flight. Here a
// row takes L lanes (the power of two >= its chunks), a 256-thread block R = 256 / L rows at a time,
// and the row's dot product is summed over its L lanes by shuffles, with no barrier. Every lane runs
// the shuffles, those of a row past N with zeros. For dw each of the block's R row groups keeps its
// own transposed partial in shared memory ([R][8][L]: a thread owns its columns in its group), and
// the block adds the groups in order into its row of dw_part at the end.
template <int L>
__global__ void __launch_bounds__(kRmsnormShortThreads)
    rmsnorm_backward_short_kernel(bf16* dx, float* dw_part, const bf16* dout, const bf16* x, const bf16* w,
                                  const float* rstd, int N, int C, bool vec) {
    constexpr int R = kRmsnormShortThreads / L;
    extern __shared__ float sdw[];  // [R][8][L], only when dw_part
    const int j = threadIdx.x % L, group = threadIdx.x / L, chunks = (C + 7) / 8;
    const bool mine = j < chunks;
    float* gdw = dw_part ? sdw + group * 8 * L : nullptr;  // this row group's partial
    if (gdw)
        for (int k = 0; k < 8; k++) gdw[k * L + j] = 0.0f;
    float wv[8] = {};
    if (mine) load8(wv, w, 8 * j, C, vec);
    for (int base = blockIdx.x * R; base < N; base += gridDim.x * R) {
        const int n = base + group;
        const bool row = n < N;
        const size_t off = (size_t)n * C;
        float gv[8] = {}, xv[8] = {}, dv[8] = {}, dot = 0.0f;
        if (row && mine) {
            load8(gv, dout + off, 8 * j, C, vec);
            load8(xv, x + off, 8 * j, C, vec);
            load8(dv, dx + off, 8 * j, C, vec);
            add_dot8(dot, gv, wv, xv);
        }
        dot = warp_reduce<SumOp, L>(dot);
        if (row && mine) {
            const float r = rstd[n], kr = r * r * r * dot / (float)C;
            backward8(dv, gdw, L, j, gv, wv, xv, r, kr);
            store8(dx + off, dv, 8 * j, C, vec);
        }
    }
    if (dw_part) {
        __syncthreads();
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            float s = 0.0f;
            for (int g = 0; g < R; g++) s += sdw[(g * 8 + c % 8) * L + c / 8];
            dw_part[(size_t)blockIdx.x * C + c] = s;
        }
    }
}

// dw[c] += Σ_b part[b, c], b in order: one thread per column (coalesced across the warp).
__global__ void rmsnorm_dw_kernel(float* dw, const float* part, int nparts, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s = 0.0f;
    for (int b = 0; b < nparts; b++) s += part[(size_t)b * C + c];
    dw[c] += s;
}

void rmsnorm_backward(bf16* dx, float* dw, const bf16* dout, const bf16* x, const bf16* w, const float* rstd, int N,
                      int C) {
    if (N <= 0 || C <= 0) return;
    int chunks = (C + 7) / 8;
    // The grid depends only on the shape (kernels.h), so the dw summation order, and hence its bits,
    // do too; at most 512 blocks keep the dw partials (blocks × C floats of scratch) small.
    const int blocks = rmsnorm_backward_blocks(N, C);
    bool vec = C % 8 == 0 && aligned16(dx) && aligned16(dout) && aligned16(x) && aligned16(w);
    float* part = dw ? (float*)cuda_scratch(Scratch::reduce, (size_t)blocks * C * sizeof(float)) : nullptr;
    if (C <= 256) {  // short rows: L lanes a row, as rmsnorm_backward_blocks counts them
        const size_t smem = dw ? (size_t)kRmsnormShortThreads * 8 * sizeof(float) : 0;  // R·8·L floats
        auto launch = [&](auto kernel) {
            kernel<<<blocks, kRmsnormShortThreads, smem>>>(dx, part, dout, x, w, rstd, N, C, vec);
        };
        const int lanes = rmsnorm_short_row_lanes(C);
        if (lanes == 8) launch(rmsnorm_backward_short_kernel<8>);
        else if (lanes == 16) launch(rmsnorm_backward_short_kernel<16>);
        else launch(rmsnorm_backward_short_kernel<32>);
    } else {
        // One chunk per thread up to C = 4096, then loop; at most 512 threads.
        int threads = std::min(kBackwardMaxThreads, (chunks + 31) / 32 * 32);
        size_t smem = 0;
        if (dw) {
            smem = (size_t)8 * chunks * sizeof(float);
            if (smem > 48 * 1024)  // beyond the default dynamic shared memory limit: opt in (C > 12288)
                CUDA_CHECK(cudaFuncSetAttribute(rmsnorm_backward_kernel<false>,
                                                cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        }
        if (chunks <= threads) rmsnorm_backward_kernel<true><<<blocks, threads, smem>>>(dx, part, dout, x, w, rstd, N, C, vec);
        else rmsnorm_backward_kernel<false><<<blocks, threads, smem>>>(dx, part, dout, x, w, rstd, N, C, vec);
    }
    CUDA_LAUNCH_CHECK();
    if (dw) {
        rmsnorm_dw_kernel<<<ceil_div(C, 256), 256>>>(dw, part, blocks, C);
        CUDA_LAUNCH_CHECK();
    }
}

}  // namespace cuda

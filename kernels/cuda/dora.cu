// DoRA's three ops (kernels/kernels.h; the CPU reference is kernels/cpu/dora.cpp): the row norms of
// W + s·B·A, the per-column rescale of the LoRA projection's output, and its backward. All three are
// small next to the projection's GEMMs: the norms cost OC·C·r multiply-adds (the GEMM's N·OC·C times
// r/N), the other two a pass over an [N, OC] activation each.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/reduce.cuh"
#include "model/util.h"

namespace cuda {

namespace {

// The norms: kDoraNormRows rows of W a block, so that A (r × C) is read from L2 once per block, not
// once per row (for a 4096-wide Llama-2-7B projection at r 16: 34 MB a projection instead of 540).
// The block's rows of B sit in shared memory, zero-padded to rk (r rounded up to 4) so each thread
// reads four of a row's values at a time; each thread walks the columns i ≡ threadIdx.x (mod
// blockDim) keeping (B·A)[row, i] of all its rows in registers: per column, r loads of A (coalesced
// across the warp) and rows × r multiply-adds. Each row's v² sums over its columns per thread,
// then over the warp (shuffles) and the warps in order: the same bits on every call. rows is
// kDoraNormRows, or 1 when a rank too large for their B in shared memory asks for it.
constexpr int kDoraNormRows = 16, kDoraNormThreads = 256;
template <int R>
__global__ void dora_norm_kernel(float* norm, const bf16* w, const bf16* A, const bf16* B, int OC, int C, int r, int rk,
                                 float scale) {
    extern __shared__ __align__(16) float b_rows[];  // [R][rk]
    __shared__ float part[R][kDoraNormThreads / 32];
    const int j0 = blockIdx.x * R;
    for (int e = threadIdx.x; e < R * rk; e += blockDim.x) {
        const int row = e / rk, k = e % rk, j = j0 + row;
        b_rows[e] = j < OC && k < r ? __bfloat162float(B[(size_t)j * r + k]) : 0.0f;
    }
    __syncthreads();
    float acc[R];
    #pragma unroll
    for (int row = 0; row < R; row++) acc[row] = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        float ba[R];
        #pragma unroll
        for (int row = 0; row < R; row++) ba[row] = 0.0f;
        for (int k0 = 0; k0 < rk; k0 += 4) {
            float a[4];
            #pragma unroll
            for (int kk = 0; kk < 4; kk++) a[kk] = k0 + kk < r ? __bfloat162float(A[(size_t)(k0 + kk) * C + i]) : 0.0f;
            #pragma unroll
            for (int row = 0; row < R; row++) {
                const float4 b = *reinterpret_cast<const float4*>(&b_rows[row * rk + k0]);
                ba[row] += b.x * a[0] + b.y * a[1] + b.z * a[2] + b.w * a[3];
            }
        }
        #pragma unroll
        for (int row = 0; row < R; row++)
            if (j0 + row < OC) {
                const float v = __bfloat162float(w[(size_t)(j0 + row) * C + i]) + scale * ba[row];
                acc[row] += v * v;
            }
    }
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    #pragma unroll
    for (int row = 0; row < R; row++) {
        const float s = warp_reduce<SumOp>(acc[row]);
        if (lane == 0) part[row][warp] = s;
    }
    __syncthreads();
    if (threadIdx.x < R && j0 + (int)threadIdx.x < OC) {
        float s = part[threadIdx.x][0];
        for (int k = 1; k < kDoraNormThreads / 32; k++) s += part[threadIdx.x][k];
        norm[j0 + threadIdx.x] = sqrtf(s);
    }
}

// One thread per element of y, rounded once to BF16.
__global__ void dora_forward_kernel(bf16* y, const bf16* z, const bf16* m, const float* norm, const bf16* bias,
                                    const bf16* add, size_t n, int OC) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const int j = (int)(i % OC);
    float v = __bfloat162float(m[j]) / norm[j] * __bfloat162float(z[i]);
    if (add) v += __bfloat162float(add[i]);
    if (bias) v += __bfloat162float(bias[j]);
    y[i] = __float2bfloat16(v);
}

// A block owns 32 columns (threadIdx.x: one warp reads 32 consecutive elements of a row) and walks
// the rows of its stripe (blockIdx.y, dora_backward_stripes: a narrow projection alone would leave
// most of the GPU idle) in kDoraRows strands (threadIdx.y); the strands' sums of dy·z meet in shared
// memory and one thread per column adds them in strand order. With one stripe it adds the sum to dm
// itself; with several it writes part[stripe][j], which dora_dm_reduce_kernel adds in stripe order:
// no atomics, the same bits on every call.
constexpr int kDoraRows = 16;
__global__ void dora_backward_kernel(bf16* dz, float* dm, float* part, const bf16* dy, const bf16* z, const bf16* m,
                                     const float* norm, int N, int OC, int stripe_rows) {
    __shared__ float strands[kDoraRows][32];
    const int j = blockIdx.x * 32 + threadIdx.x;
    const int n_end = min(N, ((int)blockIdx.y + 1) * stripe_rows);
    float acc = 0.0f;
    if (j < OC) {
        const float g = __bfloat162float(m[j]) / norm[j];
        for (int n = (int)blockIdx.y * stripe_rows + (int)threadIdx.y; n < n_end; n += kDoraRows) {
            const size_t i = (size_t)n * OC + j;
            const float d = __bfloat162float(dy[i]);
            acc += d * __bfloat162float(z[i]);
            dz[i] = __float2bfloat16(g * d);
        }
    }
    strands[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && j < OC) {
        float s = strands[0][threadIdx.x];
        for (int t = 1; t < kDoraRows; t++) s += strands[t][threadIdx.x];
        if (part) part[(size_t)blockIdx.y * OC + j] = s;
        else dm[j] += s / norm[j];
    }
}

// dm[j] += Σ_z part[z][j] / norm[j], the stripes in order.
__global__ void dora_dm_reduce_kernel(float* dm, const float* part, const float* norm, int stripes, int OC) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= OC) return;
    float s = 0.0f;
    for (int z = 0; z < stripes; z++) s += part[(size_t)z * OC + j];
    dm[j] += s / norm[j];
}

}  // namespace

void dora_norm(float* norm, const bf16* w, const bf16* A, const bf16* B, int OC, int C, int r, float scale) {
    if (OC == 0) return;
    const int rk = (r + 3) / 4 * 4;
    // A block's shared memory, without opting in to more: 48 KiB for its rows of B (dynamic) and
    // the warps' partial sums (static, a float per row and warp) together.
    const size_t smem_limit = 48 << 10, per_row_sums = kDoraNormThreads / 32 * 4;
    auto fits = [&](size_t rows) { return rows * ((size_t)rk * 4 + per_row_sums) <= smem_limit; };
    if (!fits(1))
        fail("DoRA at rank %d: its row of B does not fit the norms kernel's shared memory (ranks up to %zu)", r,
             (smem_limit - per_row_sums) / 4);
    if (fits(kDoraNormRows))
        dora_norm_kernel<kDoraNormRows><<<ceil_div(OC, kDoraNormRows), kDoraNormThreads, (size_t)kDoraNormRows * rk * 4>>>(
            norm, w, A, B, OC, C, r, rk, scale);
    else
        dora_norm_kernel<1><<<OC, kDoraNormThreads, (size_t)rk * 4>>>(norm, w, A, B, OC, C, r, rk, scale);
    CUDA_LAUNCH_CHECK();
}

void dora_forward(bf16* y, const bf16* z, const bf16* m, const float* norm, const bf16* bias, const bf16* add, int N,
                  int OC) {
    const size_t n = (size_t)N * OC;
    if (n == 0) return;
    dora_forward_kernel<<<ceil_div(n, 256), 256>>>(y, z, m, norm, bias, add, n, OC);
    CUDA_LAUNCH_CHECK();
}

void dora_backward(bf16* dz, float* dm, const bf16* dy, const bf16* z, const bf16* m, const float* norm, int N, int OC) {
    if (OC == 0 || N == 0) return;
    const int stripes = dora_backward_stripes(N, OC), stripe_rows = ceil_div(N, stripes);
    float* part = stripes > 1 ? (float*)cuda_scratch(Scratch::reduce, dora_backward_scratch_bytes(N, OC)) : nullptr;
    dora_backward_kernel<<<dim3(ceil_div(OC, 32), ceil_div(N, stripe_rows)), dim3(32, kDoraRows)>>>(
        dz, dm, part, dy, z, m, norm, N, OC, stripe_rows);
    CUDA_LAUNCH_CHECK();
    if (!part) return;
    dora_dm_reduce_kernel<<<ceil_div(OC, 256), 256>>>(dm, part, norm, ceil_div(N, stripe_rows), OC);
    CUDA_LAUNCH_CHECK();
}

}  // namespace cuda

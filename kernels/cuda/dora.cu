// DoRA's three ops (kernels/kernels.h; the CPU reference is kernels/cpu/dora.cpp): the row norms of
// W + s·B·A, the per-column rescale of the LoRA projection's output, and its backward. All three are
// small next to the projection's GEMMs: the norms cost OC·C·r multiply-adds (the GEMM's N·OC·C times
// r/N), the other two a pass over an [N, OC] activation each.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/reduce.cuh"

namespace cuda {

namespace {

// One block per row j of W: each thread walks the columns i ≡ threadIdx.x (mod blockDim), forms
// v = w[j,i] + s·Σ_k B[j,k]·A[k,i] (consecutive threads read consecutive A elements: coalesced;
// B's row is one broadcast value per k) and sums v²; the block sums in a fixed order.
__global__ void dora_norm_kernel(float* norm, const bf16* w, const bf16* A, const bf16* B, int C, int r, float scale) {
    const int j = blockIdx.x;
    const bf16* wj = w + (size_t)j * C;
    const bf16* bj = B + (size_t)j * r;
    float acc = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        float ba = 0.0f;
        for (int k = 0; k < r; k++) ba += __bfloat162float(bj[k]) * __bfloat162float(A[(size_t)k * C + i]);
        const float v = __bfloat162float(wj[i]) + scale * ba;
        acc += v * v;
    }
    acc = block_reduce<SumOp>(acc);
    if (threadIdx.x == 0) norm[j] = sqrtf(acc);
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
// all N rows in kDoraRows strands (threadIdx.y); the strands' sums of dy·z meet in shared memory and
// one thread per column adds them in strand order: no atomics, the same bits on every call.
constexpr int kDoraRows = 16;
__global__ void dora_backward_kernel(bf16* dz, float* dm, const bf16* dy, const bf16* z, const bf16* m,
                                     const float* norm, int N, int OC) {
    __shared__ float part[kDoraRows][32];
    const int j = blockIdx.x * 32 + threadIdx.x;
    float acc = 0.0f;
    if (j < OC) {
        const float g = __bfloat162float(m[j]) / norm[j];
        for (int n = threadIdx.y; n < N; n += kDoraRows) {
            const size_t i = (size_t)n * OC + j;
            const float d = __bfloat162float(dy[i]);
            acc += d * __bfloat162float(z[i]);
            dz[i] = __float2bfloat16(g * d);
        }
    }
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && j < OC) {
        float s = part[0][threadIdx.x];
        for (int t = 1; t < kDoraRows; t++) s += part[t][threadIdx.x];
        dm[j] += s / norm[j];
    }
}

}  // namespace

void dora_norm(float* norm, const bf16* w, const bf16* A, const bf16* B, int OC, int C, int r, float scale) {
    if (OC == 0) return;
    dora_norm_kernel<<<OC, 256>>>(norm, w, A, B, C, r, scale);
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
    if (OC == 0) return;
    dora_backward_kernel<<<ceil_div(OC, 32), dim3(32, kDoraRows)>>>(dz, dm, dy, z, m, norm, N, OC);
    CUDA_LAUNCH_CHECK();
}

}  // namespace cuda

// The FP32 -> BF16 cast and the row moves of the CUDA backend's Ops (cast, gather_rows, scatter_rows,
// gather_columns;
// upload and download convert on the host, kernels/cuda/backend.cu). Pure bandwidth: 128-bit
// accesses where alignment allows.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/packed.cuh"

namespace cuda {

// ---- casts: one thread per 8 elements; FP32 -> BF16 rounds to nearest even (or, with a nonzero
// key, stochastically: packed.cuh's store8).

template <class To, class From>
__global__ void cast_kernel(To* dst, const From* src, size_t n, bool vec, uint64_t sr_key) {
    size_t i = 8 * ((size_t)blockIdx.x * blockDim.x + threadIdx.x);
    if (i >= n) return;
    float v[8];
    load8(v, src, i, n, vec);
    store8(dst, v, i, n, vec, sr_key);
}

template <class To, class From>
static void cast(To* dst, const From* src, size_t n, uint64_t sr_key = 0) {
    if (n == 0) return;
    const int threads = 256;
    bool vec = aligned16(dst) && aligned16(src);
    cast_kernel<<<ceil_div(n, 8 * threads), threads>>>(dst, src, n, vec, sr_key);
    CUDA_LAUNCH_CHECK();
}

void cast_f32_to_bf16(bf16* dst, const float* src, size_t n) { cast(dst, src, n); }
void cast_f32_to_bf16_stochastic(bf16* dst, const float* src, size_t n, uint64_t key) { cast(dst, src, n, key); }

// ---- row moves: out[out_row(i), :] = in[in_row(i), :], where a null index array means the
// identity. One block per row i; its threads copy the row's C elements as raw bits (16 bytes at a
// time when every row is 16-byte aligned: both bases aligned and C % 8 == 0).
__global__ void copy_rows_kernel(bf16* out, const bf16* in, const int32_t* out_rows, const int32_t* in_rows, int C,
                                 bool vec) {
    int i = blockIdx.x;
    bf16* dst = out + (size_t)(out_rows ? out_rows[i] : i) * C;
    const bf16* src = in + (size_t)(in_rows ? in_rows[i] : i) * C;
    if (vec) {
        for (int j = threadIdx.x; j < C / 8; j += blockDim.x)
            reinterpret_cast<int4*>(dst)[j] = reinterpret_cast<const int4*>(src)[j];
    } else {
        for (int c = threadIdx.x; c < C; c += blockDim.x) dst[c] = src[c];
    }
}

static void copy_rows(bf16* out, const bf16* in, const int32_t* out_rows, const int32_t* in_rows, int n, int C) {
    if (n <= 0 || C <= 0) return;
    bool vec = C % 8 == 0 && aligned16(out) && aligned16(in);
    copy_rows_kernel<<<n, 128>>>(out, in, out_rows, in_rows, C, vec);
    CUDA_LAUNCH_CHECK();
}

void gather_rows(bf16* out, const bf16* in, const int32_t* rows, int n, int C) { copy_rows(out, in, nullptr, rows, n, C); }
// The rows must be distinct (as every caller's are: LM-head chunks, KV-cache slots): with a repeated
// row, which of the copies lands would depend on block scheduling.
void scatter_rows(bf16* out, const bf16* in, const int32_t* rows, int n, int C) { copy_rows(out, in, rows, nullptr, n, C); }

// A few columns (the trainable tokens' k, against a vocabulary of V) of each of n rows: one block per
// row, a thread per column. The reads are scattered across the row, but k·n elements are a rounding
// error beside the GEMM that made the row (n·V·dim).
__global__ void gather_columns_kernel(bf16* out, const bf16* in, const int32_t* cols, int V, int k) {
    const size_t i = blockIdx.x;
    for (int j = threadIdx.x; j < k; j += blockDim.x) out[i * k + j] = in[i * V + cols[j]];
}

void gather_columns(bf16* out, const bf16* in, const int32_t* cols, int n, int V, int k) {
    if (n <= 0 || k <= 0) return;
    gather_columns_kernel<<<n, std::min(256, (k + 31) / 32 * 32)>>>(out, in, cols, V, k);
    CUDA_LAUNCH_CHECK();
}

}  // namespace cuda

// Token embedding: the forward is a row gather, the backward a scatter-add into the FP32 table
// gradient, both times `scale` (Gemma's sqrt(dim); 1 for the others).
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/packed.cuh"

namespace cuda {

// out[n, :] = table[tokens[n], :] · scale, rounded once to BF16 (as the CPU's FP32 product then the
// storage type). One thread per 8 elements of a row, the N rows' chunks numbered one after another
// on a 1-D grid (a grid's y is at most 65,535: a batch of 16 × 4096 tokens is more).
__global__ void embedding_scaled_kernel(bf16* out, const int32_t* tokens, const bf16* table, int N, int C,
                                        float scale, bool vec) {
    const size_t chunks = (C + 7) / 8, t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (size_t)N * chunks) return;
    const size_t n = t / chunks;
    const int i = 8 * (int)(t % chunks);
    float v[8];
    load8(v, table + (size_t)tokens[n] * C, i, C, vec);
    #pragma unroll
    for (int k = 0; k < 8; k++) v[k] *= scale;
    store8(out + (size_t)n * C, v, i, C, vec);
}

// scale 1: exactly gather_rows (kernels/cuda/cast.cu), a copy of raw bits.
void embedding_forward(bf16* out, const int32_t* tokens, const bf16* table, int N, int C, float scale) {
    if (scale == 1.0f) return gather_rows(out, table, tokens, N, C);
    if (N <= 0 || C <= 0) return;
    const int threads = 128;
    const bool vec = C % 8 == 0 && aligned16(out) && aligned16(table);
    embedding_scaled_kernel<<<ceil_div((size_t)N * ((C + 7) / 8), threads), threads>>>(out, tokens, table, N, C, scale,
                                                                                       vec);
    CUDA_LAUNCH_CHECK();
}

// dtable[tokens[n], c] += dout[n, c] · scale for n = 0..N-1 in order.
//
// A token id can repeat within the batch, so the tokens cannot be split across threads without
// atomics (nondeterministic order). Instead each thread owns one column c and walks all N tokens in
// order: every dtable element is then updated by one thread, in token order, which gives the same
// sum, bit for bit, as the CPU reference's loop. Warps read 32 consecutive columns of a row
// (coalesced).
//
// A plain walk would be one dependent global read-modify-write per token (the next token may be the
// same row, so its load cannot start before the previous store). So tokens go in batches of kBatch:
// the batch's loads are issued together, then the adds are applied in order in registers, a token
// that repeats an earlier one in the batch continuing from that one's running value (not from the
// stale load), then the stores go out in order (for a repeated row, the last and complete value
// lands last). Same additions in the same order, kBatch times fewer round trips.
constexpr int kBatch = 16;

__global__ void embedding_backward_kernel(float* dtable, const bf16* __restrict__ dout,
                                          const int32_t* __restrict__ tokens, int N, int C, float scale) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (int n0 = 0; n0 < N; n0 += kBatch) {
        int tok[kBatch];
        float val[kBatch];
        #pragma unroll
        for (int k = 0; k < kBatch; k++) {
            tok[k] = n0 + k < N ? tokens[n0 + k] : -1;  // -1: past the end (ids are >= 0)
            val[k] = tok[k] >= 0 ? dtable[(size_t)tok[k] * C + c] : 0.0f;
        }
        #pragma unroll
        for (int k = 0; k < kBatch; k++) {
            #pragma unroll
            for (int j = 0; j < k; j++)
                if (tok[j] == tok[k]) val[k] = val[j];  // the latest earlier occurrence wins
            if (tok[k] >= 0) val[k] += __bfloat162float(dout[(size_t)(n0 + k) * C + c]) * scale;
        }
        #pragma unroll
        for (int k = 0; k < kBatch; k++)
            if (tok[k] >= 0) dtable[(size_t)tok[k] * C + c] = val[k];
    }
}

void embedding_backward(float* dtable, const bf16* dout, const int32_t* tokens, int N, int C, float scale) {
    if (N <= 0 || C <= 0) return;
    // Small blocks: the work is C independent chains, so spread them over as many SMs as possible.
    const int threads = 64;
    embedding_backward_kernel<<<ceil_div(C, threads), threads>>>(dtable, dout, tokens, N, C, scale);
    CUDA_LAUNCH_CHECK();
}

}  // namespace cuda

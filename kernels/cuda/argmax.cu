// Greedy decoding's pick on the GPU (kernels.h, argmax_rows): the first column of each row's largest
// logit. The decoder then copies S ids to the host instead of S rows of logits (at S = 16 and
// Llama 3's 128,256 ids, 4 MB a step through a pageable copy, then 2M comparisons on one CPU core).
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/packed.cuh"
#include "kernels/cuda/reduce.cuh"

namespace cuda {

// (value, column) as one 64-bit key whose order is the pick's order, so that the block reduction is
// a plain max: the float's bits made order-preserving (negative values flipped whole, positive ones
// with the sign bit set) in the high half, the column's complement in the low half (of equal values
// the lower column has the larger key). 0 is below every key: "nothing picked". −0 keys as +0: the
// two compare equal, so the CPU's `>` keeps the first of them.
__device__ inline unsigned long long argmax_key(float v, int j) {
    uint32_t u = v == 0.0f ? 0u : __float_as_uint(v);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ((unsigned long long)u << 32) | (uint32_t)~(uint32_t)j;
}

struct MaxU64Op {
    __device__ unsigned long long operator()(unsigned long long a, unsigned long long b) const { return a > b ? a : b; }
};

// One block per row. Each thread scans its chunks of 8 columns from the left with a strict `>` (as the
// CPU's loop: its first maximum, never NaN), then the block keeps the largest key.
__global__ void argmax_rows_kernel(int32_t* idx, const bf16* x, int n, int ld, bool vec) {
    const bf16* row = x + (size_t)blockIdx.x * ld;
    float best = -INFINITY;
    int at = -1;
    for (int j0 = 8 * threadIdx.x; j0 < n; j0 += 8 * blockDim.x) {
        float v[8];
        load8(v, row, j0, n, vec);
        #pragma unroll
        for (int k = 0; k < 8; k++)
            if (j0 + k < n && v[k] > best) best = v[k], at = j0 + k;
    }
    const unsigned long long key = block_reduce<MaxU64Op>(at < 0 ? 0ull : argmax_key(best, at));
    if (threadIdx.x == 0) idx[blockIdx.x] = key == 0 ? 0 : (int32_t)~(uint32_t)key;
}

void argmax_rows(int32_t* idx, const bf16* x, int rows, int n, int ld) {
    if (rows <= 0) return;
    const bool vec = ld % 8 == 0 && aligned16(x);
    argmax_rows_kernel<<<rows, 512>>>(idx, x, n, ld, vec);
    CUDA_LAUNCH_CHECK();
}

}  // namespace cuda

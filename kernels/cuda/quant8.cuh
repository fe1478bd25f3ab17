// bitsandbytes' blockwise 8-bit dynamic quantization on the device, shared by the double
// quantization of NF4's absmax values (nf4.cu) and the 8-bit AdamW moments (adamw.cu): the CPU's
// arithmetic (kernels/cpu/nf4.cpp, kernels/nf4_tables.h), operation for operation.
#pragma once
#include <cstdint>

#include "kernels/cuda/common.cuh"

namespace cuda {

// 1/absmax as the CPU computes it (0 for an all-zero block, whose values all map to the code of 0).
// __fdiv_rn: the correctly rounded quotient whatever the compiler flags (-use_fast_math included).
__device__ inline float inv_absmax(float amax) { return amax > 0.0f ? __fdiv_rn(1.0f, amax) : 0.0f; }

// |x| for the absmax, as the CPU's amax = std::max(amax, |x|) from 0 sees it: a NaN never wins.
__device__ inline float abs_for_max(float x) { return fmaxf(0.0f, fabsf(x)); }

// The map entry nearest x, as the CPU's std::lower_bound + neighbour comparison: L = the number of
// entries < x (a branch-free binary search: 8 halvings leave L in [lo, lo+1], one more test settles
// it; NaN is < nothing: L = 0), then the nearer of map[L-1] and map[L], ties to the lower.
__device__ inline uint8_t dynamic_code(float x, const float* map) {
    int lo = 0;
    #pragma unroll
    for (int step = 128; step > 0; step >>= 1)
        if (map[lo + step - 1] < x) lo += step;
    int L = lo + (map[lo] < x ? 1 : 0);  // lo <= 255 here
    if (L == 0) return 0;
    if (L == 256) return 255;
    return (uint8_t)(x - map[L - 1] <= map[L] - x ? L - 1 : L);
}

}  // namespace cuda

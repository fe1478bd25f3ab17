// 128-bit access for the memory-bound kernels: a thread moves 8 consecutive elements at a time
// (one 16-byte load of BF16, two of FP32) and computes on them as FP32 registers.
//
// A kernel decides once whether the vector path is allowed (`vec`: every pointer it streams is
// 16-byte aligned and, for row kernels, the row width keeps each row aligned, i.e. C % 8 == 0).
// Chunks start at multiples of 8 elements; a chunk that is full and allowed goes as one vector
// access, anything else (the tail of a tensor, an odd row width, a view that starts mid-vector)
// element by element. The results are the same either way: only the access width differs.
#pragma once
#include <cstdint>

#include "kernels/cuda/common.cuh"

inline bool aligned16(const void* p) { return ((uintptr_t)p & 15) == 0; }

// v[k] = p[i + k] for i + k < n; lanes past n read as 0.
__device__ inline void load8(float (&v)[8], const bf16* p, size_t i, size_t n, bool vec) {
    if (vec && i + 8 <= n) {
        alignas(16) bf16 b[8];
        *reinterpret_cast<int4*>(b) = *reinterpret_cast<const int4*>(p + i);
        #pragma unroll
        for (int k = 0; k < 8; k++) v[k] = __bfloat162float(b[k]);
    } else {
        #pragma unroll
        for (int k = 0; k < 8; k++) v[k] = i + k < n ? __bfloat162float(p[i + k]) : 0.0f;
    }
}

// Loads issued ahead of their use. load8 converts as it loads, so a thread that loads several chunks
// with it waits for each before the next conversion, and the compiler may issue a later load only
// after an earlier one has arrived. A kernel that wants k loads in flight per thread takes the raw 16
// bytes of each chunk first (a full, allowed chunk: i + 8 <= n and vec) and unpacks them when it uses
// them; the values are the same as load8's.
__device__ inline uint4 load_raw8(const bf16* p, size_t i) { return *reinterpret_cast<const uint4*>(p + i); }
__device__ inline void unpack8(float (&v)[8], const uint4& raw) {
    const bf16* b = reinterpret_cast<const bf16*>(&raw);
    #pragma unroll
    for (int k = 0; k < 8; k++) v[k] = __bfloat162float(b[k]);
}

// The two halves of that for any chunk: prefetch_raw8 takes the raw bytes of a full chunk on the
// vector path (else nothing); unpack_or_load8 then gives its floats, from those bytes or, for a
// partial or scalar-path chunk, loaded now.
__device__ inline void prefetch_raw8(uint4& raw, const bf16* p, size_t i, size_t n, bool vec) {
    if (vec && i + 8 <= n) raw = load_raw8(p, i);
}
__device__ inline void unpack_or_load8(float (&v)[8], const uint4& raw, const bf16* p, size_t i, size_t n, bool vec) {
    if (vec && i + 8 <= n) unpack8(v, raw);
    else load8(v, p, i, n, false);
}

__device__ inline void load8(float (&v)[8], const float* p, size_t i, size_t n, bool vec) {
    if (vec && i + 8 <= n) {
        float4 a = *reinterpret_cast<const float4*>(p + i), b = *reinterpret_cast<const float4*>(p + i + 4);
        v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    } else {
        #pragma unroll
        for (int k = 0; k < 8; k++) v[k] = i + k < n ? p[i + k] : 0.0f;
    }
}

// BF16 of x rounded stochastically: up with probability (x − down)/(up − down), from 16 random bits
// added below the BF16 mantissa before truncation; unbiased (E[result] = x), where round-to-nearest
// would lose every update smaller than half a BF16 ulp. Inf and NaN round to nearest as usual; a
// finite x beyond the largest BF16 stays at that largest value rather than becoming Inf.
__device__ inline bf16 bf16_round_stochastic(float x, uint32_t random16) {
    const uint32_t bits = __float_as_uint(x);
    if ((bits & 0x7F800000u) == 0x7F800000u) return __float2bfloat16_rn(x);  // Inf, NaN
    unsigned short r = (unsigned short)((bits + (random16 & 0xFFFFu)) >> 16);
    if ((r & 0x7F80u) == 0x7F80u) r = (unsigned short)((r & 0x8000u) | 0x7F7Fu);  // would be ±Inf
    return __ushort_as_bfloat16(r);
}

// p[i + k] = v[k] for i + k < n; BF16 rounds to nearest even, or, with sr_key != 0, stochastically,
// the random bits of element i + k being hash64(sr_key, i + k). (FP32 below: nothing to round.)
__device__ inline void store8(bf16* p, const float (&v)[8], size_t i, size_t n, bool vec, uint64_t sr_key = 0) {
    alignas(16) bf16 b[8];
    #pragma unroll
    for (int k = 0; k < 8; k++)
        b[k] = sr_key ? bf16_round_stochastic(v[k], (uint32_t)hash64(sr_key, i + k)) : __float2bfloat16_rn(v[k]);
    if (vec && i + 8 <= n) {
        *reinterpret_cast<int4*>(p + i) = *reinterpret_cast<const int4*>(b);
    } else {
        #pragma unroll
        for (int k = 0; k < 8; k++)
            if (i + k < n) p[i + k] = b[k];
    }
}

__device__ inline void store8(float* p, const float (&v)[8], size_t i, size_t n, bool vec, uint64_t = 0) {
    if (vec && i + 8 <= n) {
        *reinterpret_cast<float4*>(p + i) = make_float4(v[0], v[1], v[2], v[3]);
        *reinterpret_cast<float4*>(p + i + 4) = make_float4(v[4], v[5], v[6], v[7]);
    } else {
        #pragma unroll
        for (int k = 0; k < 8; k++)
            if (i + k < n) p[i + k] = v[k];
    }
}

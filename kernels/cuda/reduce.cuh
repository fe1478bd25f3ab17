// Deterministic warp and block reductions for the row and blockwise kernels. No atomics: the
// combining tree is fixed by the block shape, so the same inputs give the same bits on every call.
#pragma once
#include "kernels/cuda/common.cuh"

struct SumOp {
    template <class T>
    __device__ T operator()(T a, T b) const { return a + b; }
};
// fmaxf returns the other operand when one is NaN, like the CPU's std::max(acc, x) when acc starts
// at a number.
struct MaxOp {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// Butterfly (xor) reduction over a full warp, or over each aligned group of Width lanes (a power of
// two: several rows a warp); every lane must call it. Every lane of a group ends with the same bits:
// at each level lanes i and i^o combine the same two values, and a+b == b+a exactly.
template <class Op, int Width = 32, class T>
__device__ inline T warp_reduce(T v) {
    static_assert(Width >= 1 && Width <= 32 && (Width & (Width - 1)) == 0, "a power of two up to 32 lanes");
    #pragma unroll
    for (int o = Width / 2; o > 0; o >>= 1) v = Op()(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Reduction over the whole block, returned to every thread. Every thread must call it, blockDim.x
// a multiple of 32 (at most 1024). Each warp reduces with shuffles; then every thread combines the
// per-warp results from shared memory in warp order, so all threads get the same bits.
template <class Op, class T>
__device__ inline T block_reduce(T v) {
    __shared__ T part[32];
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    v = warp_reduce<Op>(v);
    __syncthreads();  // when called in a loop: every thread has read the previous call's part[]
    if (lane == 0) part[warp] = v;
    __syncthreads();
    T r = part[0];
    for (int i = 1; i < nwarps; i++) r = Op()(r, part[i]);
    return r;
}

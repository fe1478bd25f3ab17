// The inline-PTX building blocks of the tensor-core kernels (attention, kernels/cuda/attention_*.cu;
// the LoRA products, kernels/cuda/lora.cu): cp.async, ldmatrix, mma.sync and ex2, each with its
// CPU-emulator twin (tests/emu: `make test-emu` runs the same kernels on the CPU).
//
// ---- The tensor-core instruction: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 ----
// One warp computes D[16x8] = A[16x16] · B[16x8] + C[16x8] (A, B in BF16, C, D in FP32). Each lane
// holds pieces ("fragments") of the operands in registers. With g = lane / 4 (the "group", 0..7) and
// c = lane % 4 (the thread in the group), PTX ISA "Matrix Fragments for mma.m16n8k16":
//   A (4 regs of 2 bf16; the lower column in the low half):
//     a[0] = A[g  ][2c, 2c+1]   a[1] = A[g+8][2c, 2c+1]   a[2] = A[g][2c+8, 2c+9]   a[3] = A[g+8][2c+8, 2c+9]
//   B (2 regs; B is K x N, "col" = each column n is contiguous in k):
//     b[0] = B[2c, 2c+1][g]     b[1] = B[2c+8, 2c+9][g]
//   C, D (4 floats):  d[0], d[1] = D[g][2c, 2c+1]      d[2], d[3] = D[g+8][2c, 2c+1]
// Note that the C/D layout of two 16x8 tiles side by side (columns 0..7 and 8..15) is exactly the A
// layout of one 16x16 tile: a score tile S computed by one mma becomes, after rounding to BF16 in
// registers, the A operand of the next mma (P·V) with no data movement. That is what makes flash
// attention on mma.sync cheap: the T x T score matrix only ever lives in registers, 16 rows at a time.
//
// ---- ldmatrix.sync.aligned.m8n8.x4(.trans).shared.b16 ----
// Loads four 8x8 BF16 matrices from shared memory. Lanes 8i..8i+7 give the addresses of the 8 rows
// (16 contiguous bytes each) of matrix i; register r[i] of lane l receives matrix i's row l/4,
// elements 2(l%4), 2(l%4)+1 — exactly the per-register layout of the fragments above. With .trans the
// matrix is transposed on the way: r[i] = { M_i[2(l%4)][l/4], M_i[2(l%4)+1][l/4] }.
// For a row-major tile in shared memory (in attention a row is a token, of HD elements):
//   A operand from a [row][k] tile (Q, dO, K, V as "16 rows x 16 of the head dim"), rows r0.., cols k0..:
//       lane l points at row r0 + (l & 15), col k0 + (l >> 4) * 8
//       (matrices: rows 0-7/cols 0-7, rows 8-15/cols 0-7, rows 0-7/cols 8-15, rows 8-15/cols 8-15 = a[0..3])
//   B operand for X·Yᵀ, with Y a [n][k] tile (S = Q Kᵀ: B[k][n] = K[n][k], each column of B is a
//   contiguous K row): non-transposed, two n-tiles of 8 at once, rows n0.., cols k0..:
//       lane l points at row n0 + (l & 7) + (l >> 4) * 8, col k0 + ((l >> 3) & 1) * 8
//       -> r[0], r[1] = b[0], b[1] of n-tile n0;  r[2], r[3] = b[0], b[1] of n-tile n0 + 8
//   B operand for X·Y, with Y a [k][n] tile (O = P V: B[k][n] = V[k][n], k = key, n = head dim):
//   transposed, two n-tiles at once, rows (k) k0.., cols (n) n0..:
//       lane l points at row k0 + (l & 15), col n0 + (l >> 4) * 8
//       -> r[0], r[1] = b[0], b[1] of n-tile n0;  r[2], r[3] = b[0], b[1] of n-tile n0 + 8
//   A operand of Xᵀ·Y, from X a [k][m] tile (LoRA's dAᵀ = drop(x)ᵀ·du: m = a column of x, k = a row):
//   transposed, rows (k) k0.., cols (m) m0..:
//       lane l points at row k0 + (l & 7) + ((l >> 4) & 1) * 8, col m0 + ((l >> 3) & 1) * 8
//       (matrices: k 0-7/m 0-7, k 0-7/m 8-15, k 8-15/m 0-7, k 8-15/m 8-15 = a[0..3])
//
#pragma once
#include <cstdint>

#include "kernels/cuda/common.cuh"

#ifndef CUDA_EMULATOR
__device__ __forceinline__ uint32_t smem_addr(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }

// 16 bytes global -> shared, asynchronously; with valid = false the 16 bytes are zero-filled (src-size
// 0: nothing is read, but src must still be a valid address).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
}
// Closes the group of cp.async issued since the last commit.
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most N committed groups of this thread are still in flight. (Only this thread's
// copies: a __syncthreads() must follow before other threads read the data.)
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const bf16* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const bf16* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

// d += A·B for one 16x8x16 tile (layouts at the top of this file).
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// 2^x as one MUFU.EX2, results under 2^-126 flushed to zero. (exp2f without --use_fast_math wraps the
// same instruction in a range test and two multiplies to keep denormal results, which no softmax
// weight needs: 4 instructions instead of 1 on every score.) exp2(-inf) = 0.
__device__ __forceinline__ float exp2_ftz(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}
#else  // the CPU emulator (make test-emu): the same instructions as functions, tests/emu/warp.cpp
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) { emu::cp_async16(dst, src, valid ? 16 : 0); }
__device__ __forceinline__ void cp_async_commit() { emu::cp_async_commit(); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { emu::cp_async_wait(N); }
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const bf16* p) { emu::ldmatrix_x4(r, p, false); }
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const bf16* p) { emu::ldmatrix_x4(r, p, true); }
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    emu::mma_m16n8k16_bf16(d, a, b0, b1);
}
__device__ __forceinline__ float exp2_ftz(float x) { return exp2f(x); }
#endif

// Two floats as one register of two BF16 (lo in the low half: the lower column of a fragment).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
}

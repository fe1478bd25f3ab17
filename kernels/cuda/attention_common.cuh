// Shared by kernels/cuda/attention_forward.cu and attention_backward.cu: the tensor-core building
// blocks (cp.async, ldmatrix, mma.sync) with their fragment layouts, the tile loader, and the small
// warp helpers of the FP32 fallback kernels. The math is the CPU reference's (kernels/cpu/attention.cpp).
//
// The tensor-core instruction (mma.sync m16n8k16), ldmatrix and their fragment layouts: kernels/cuda/ptx.cuh.
//
// ---- Shared-memory tiles ----
// A tile of R tokens is stored as R rows of LD = HD + 8 BF16 (HD plus 16 bytes of padding). The 8 row
// addresses of one ldmatrix matrix are then 16 bytes apart modulo 128, i.e. in 8 different bank
// groups: no bank conflicts, with no swizzle to get wrong. Tiles are filled with cp.async (16 bytes
// per instruction, global -> shared without passing through registers, so a load of the next tile
// overlaps the math on the current one); rows past the end of the sequence are zero-filled.
#pragma once
#include <cstdint>
#include <cstdio>
#include <initializer_list>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ptx.cuh"
#include "model/util.h"

namespace attn {

constexpr float kLog2e = 1.4426950408889634f;  // exp(x) = exp2(x * log2 e)
constexpr float kLn2 = 0.6931471805599453f;

// The A fragments of a 16x16 tile from two adjacent 16x8 accumulator tiles (columns 0-7 in x, 8-15
// in y), rounded to BF16: see "Note that" in kernels/cuda/ptx.cuh.
__device__ __forceinline__ void acc_to_a(uint32_t (&a)[4], const float (&x)[4], const float (&y)[4]) {
    a[0] = pack_bf16(x[0], x[1]);
    a[1] = pack_bf16(x[2], x[3]);
    a[2] = pack_bf16(y[0], y[1]);
    a[3] = pack_bf16(y[2], y[3]);
}

// Two score products sharing one pass over the head dimension: s += A·Bᵀ and d += C·Dᵀ for one
// warp, where A and C are the warp's MT row tiles of 16 rows (16·MT contiguous rows starting at a
// and c) of [*][LD] shared tiles, and B and D are N rows of such tiles, read non-transposed (key or
// query rows as mma's column operand). Tile n of s[m], d[m] covers columns 8n .. 8n+7 of row tile m.
// (S = Q·Kᵀ with dP = dO·Vᵀ in the dQ kernel; Sᵀ = K·Qᵀ with dPᵀ = V·dOᵀ in the dK/dV kernel.)
// Each B/D fragment loaded from shared memory feeds MT row tiles: with MT = 2 a warp issues
// 1.5x fewer ldmatrix per mma, for twice the accumulator registers.
template <int MT, int N, int HD, int LD>
__device__ __forceinline__ void mma_scores_pair(float (&s)[MT][N / 8][4], float (&d)[MT][N / 8][4], const bf16* a,
                                                const bf16* c, const bf16* b, const bf16* dd, int lane) {
    #pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
        uint32_t af[MT][4], cf[MT][4];
        #pragma unroll
        for (int m = 0; m < MT; m++) {
            ldmatrix_x4(af[m], a + (m * 16 + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8);
            ldmatrix_x4(cf[m], c + (m * 16 + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8);
        }
        #pragma unroll
        for (int np = 0; np < N / 16; np++) {
            const int off = (np * 16 + (lane & 7) + (lane >> 4) * 8) * LD + kk * 16 + ((lane >> 3) & 1) * 8;
            uint32_t bf[4], df[4];
            ldmatrix_x4(bf, b + off);
            ldmatrix_x4(df, dd + off);
            #pragma unroll
            for (int m = 0; m < MT; m++) {
                mma_bf16(s[m][2 * np], af[m], bf[0], bf[1]);
                mma_bf16(s[m][2 * np + 1], af[m], bf[2], bf[3]);
                mma_bf16(d[m][2 * np], cf[m], df[0], df[1]);
                mma_bf16(d[m][2 * np + 1], cf[m], df[2], df[3]);
            }
        }
    }
}

// One score product, s += A·Bᵀ, with the operands and layout of mma_scores_pair: where a warp pair
// splits Sᵀ and dPᵀ between its two warps (the dK/dV kernel at HD 128), each computes one of them.
// A's fragments for k-step kk come from a_frags(af, kk): read from shared memory (mma_scores below)
// or, in the forward at HD 64, from registers that hold them for the whole key loop.
template <int MT, int N, int HD, int LD, class AFrags>
__device__ __forceinline__ void mma_scores_from(float (&s)[MT][N / 8][4], AFrags&& a_frags, const bf16* b, int lane) {
    #pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
        uint32_t af[MT][4];
        a_frags(af, kk);
        #pragma unroll
        for (int np = 0; np < N / 16; np++) {
            uint32_t bf[4];
            ldmatrix_x4(bf, b + (np * 16 + (lane & 7) + (lane >> 4) * 8) * LD + kk * 16 + ((lane >> 3) & 1) * 8);
            #pragma unroll
            for (int m = 0; m < MT; m++) {
                mma_bf16(s[m][2 * np], af[m], bf[0], bf[1]);
                mma_bf16(s[m][2 * np + 1], af[m], bf[2], bf[3]);
            }
        }
    }
}
// A's MT row tiles from the [MT·16][LD] shared tile at a.
template <int MT, int N, int HD, int LD>
__device__ __forceinline__ void mma_scores(float (&s)[MT][N / 8][4], const bf16* a, const bf16* b, int lane) {
    mma_scores_from<MT, N, HD, LD>(s, [&](uint32_t (&af)[MT][4], int kk) {
        #pragma unroll
        for (int m = 0; m < MT; m++) ldmatrix_x4(af[m], a + (m * 16 + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8);
    }, b, lane);
}

// acc[m] += P[m]·B for one warp's MT row tiles: P[m] is 16 rows × N columns as accumulator tiles
// (rounded to BF16 into A fragments two tiles at a time), B the [N][LD] shared tile whose rows are
// P's columns, read with the transposed ldmatrix once for all MT row tiles. (O += P·V in the
// forward; dQ += dS·K, dV += Pᵀ·dO, dK += dSᵀ·Q.)
template <int MT, int N, int HD, int LD>
__device__ __forceinline__ void mma_acc_pb(float (&acc)[MT][HD / 8][4], const float (&p)[MT][N / 8][4], const bf16* b,
                                           int lane) {
    #pragma unroll
    for (int ks = 0; ks < N / 16; ks++) {
        uint32_t a[MT][4];
        #pragma unroll
        for (int m = 0; m < MT; m++) acc_to_a(a[m], p[m][2 * ks], p[m][2 * ks + 1]);
        #pragma unroll
        for (int dp = 0; dp < HD / 16; dp++) {
            uint32_t bf[4];
            ldmatrix_x4_trans(bf, b + (ks * 16 + (lane & 15)) * LD + dp * 16 + (lane >> 4) * 8);
            #pragma unroll
            for (int m = 0; m < MT; m++) {
                mma_bf16(acc[m][2 * dp], a[m], bf[0], bf[1]);
                mma_bf16(acc[m][2 * dp + 1], a[m], bf[2], bf[3]);
            }
        }
    }
}

// Tokens r0 .. r0+ROWS-1 of one head into a [ROWS][HD+8] shared tile with cp.async, all NT threads
// of the block taking 16-byte chunks in turn (consecutive threads read consecutive bytes of a row).
// Token r of the head starts at base + r * stride; tokens >= T are zero-filled, so that padding rows
// give exact zeros (a zero P times a zero V row; never garbage that could be Inf or NaN).
// NT is a multiple of the chunks per row, so each thread keeps one column chunk and steps down the
// rows NT/CH at a time: a fully unrolled run of cp.async with one pointer increment each, instead
// of a division, a 64-bit multiply and a loop branch per chunk.
template <int ROWS, int HD, int NT>
__device__ __forceinline__ void load_tile(bf16* tile, const bf16* base, size_t stride, int r0, int T, int tid) {
    constexpr int CH = HD / 8;     // 16-byte chunks per row
    static_assert(NT % CH == 0, "load_tile: the block's threads must cover whole rows");
    constexpr int RPP = NT / CH;   // rows per pass of the block
    const int r = tid / CH, c = tid % CH;
    bf16* dst = tile + r * (HD + 8) + c * 8;
    const bf16* src = base + (size_t)(r0 + r) * stride + c * 8;
    #pragma unroll
    for (int i = 0; i < (ROWS + RPP - 1) / RPP; i++) {
        if (ROWS % RPP != 0 && r + i * RPP >= ROWS) break;
        const bool ok = r0 + r + i * RPP < T;
        cp_async16(dst + i * RPP * (HD + 8), ok ? src + (size_t)i * RPP * stride : base, ok);
    }
}

// Copies a warp's 16 finished rows, staged as BF16 in a [16][HD+8] shared tile, to global memory with
// 16-byte stores; row r goes to base + (r0 + r) * stride when r0 + r < T.
template <int HD>
__device__ __forceinline__ void store_rows16(bf16* base, size_t stride, int r0, int T, const bf16* stage, int lane) {
    constexpr int CH = HD / 8;
    #pragma unroll
    for (int i = lane; i < 16 * CH; i += 32) {
        const int r = i / CH, c = i % CH;
        if (r0 + r < T)
            *reinterpret_cast<uint4*>(base + (size_t)(r0 + r) * stride + c * 8) =
                *reinterpret_cast<const uint4*>(stage + r * (HD + 8) + c * 8);
    }
}

// Writes a warp's 16 x HD accumulator tile (the C layout, HD/8 tiles of 16x8), times `mul`, as BF16
// into its rows of a [..][HD+8] shared tile (row0 = the warp's first row there).
template <int HD>
__device__ __forceinline__ void acc_to_smem(bf16* tile, int row0, const float (&acc)[HD / 8][4], float mul0, float mul1,
                                            int lane) {
    const int g = lane >> 2, c = lane & 3;
    #pragma unroll
    for (int n = 0; n < HD / 8; n++) {
        *reinterpret_cast<uint32_t*>(tile + (row0 + g) * (HD + 8) + n * 8 + 2 * c) =
            pack_bf16(acc[n][0] * mul0, acc[n][1] * mul0);
        *reinterpret_cast<uint32_t*>(tile + (row0 + g + 8) * (HD + 8) + n * 8 + 2 * c) =
            pack_bf16(acc[n][2] * mul1, acc[n][3] * mul1);
    }
}

// The segment ids of a key block ride in its K tile's row padding: row r of a [BN][HD+8] tile has 8
// bf16 (16 bytes) after its HD elements that no ldmatrix and no cp.async touches, and the int32 id of
// key r sits in the first 4 of them. So the ids cost no shared memory of their own (at hd 256 the
// forward's and dQ's tiles fill the 99 KB of sm_86/89 to the byte), and they are double-buffered
// with the tile they belong to. The kernels load the ids of key block j + 1 into a register (thread
// tid < BN, key tid) during step j, so the global latency hides behind a step of math, and write it
// at the start of step j + 1, before the barrier that publishes the tile, which also counts the
// block's keys in the query block's segment (__syncthreads_count: none -> skip, all -> no mask).
// (Held in every warp's registers instead, with a shuffle per score column in the masked branch,
// the ids made nvcc duplicate the softmax: the hd-128 forward grew from 2,376 to 2,848 instructions
// and ran 5-7% slower on an H200, hd 64 2-9%; the dQ kernels grew alike.)
template <int HD>
__device__ __forceinline__ int& key_seg(bf16* tile, int r) {
    return *reinterpret_cast<int*>(tile + r * (HD + 8) + HD);
}
template <int HD>
__device__ __forceinline__ int key_seg(const bf16* tile, int r) {
    return *reinterpret_cast<const int*>(tile + r * (HD + 8) + HD);
}

// The sliding window as the kernels take it: query t sees keys s > t - win. Without a window (0), or
// with one at least T wide (which masks nothing), a width no row reaches, so the bounds and masks of
// the kernels need no case of their own for it; small enough that t ± win stays within an int for
// any row of fewer than 2^30 tokens.
constexpr int kNoWindow = 1 << 30;
inline int kernel_window(int window, int T) { return window > 0 && window < T ? window : kNoWindow; }

// ---- FP32 fallback helpers: a warp owns one row, lane l holds elements d = l, l+32, ... (hd <= 256) ----
constexpr int kMaxFallbackHd = 256;
constexpr int kFbRegs = kMaxFallbackHd / 32;

// Sum over the warp with a butterfly: every lane computes the same additions with its operands in
// swapped order, and IEEE addition is commutative, so all lanes hold the bit-identical total.
__device__ __forceinline__ float warp_sum(float x) {
    #pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

__device__ __forceinline__ void load_row(float (&r)[kFbRegs], const bf16* p, int hd, int lane) {
    #pragma unroll
    for (int i = 0; i < kFbRegs; i++) {
        const int d = lane + 32 * i;
        r[i] = d < hd ? __bfloat162float(p[d]) : 0.0f;
    }
}

// Σ_d a[d] · p[d] over the warp.
__device__ __forceinline__ float dot_row(const float (&a)[kFbRegs], const bf16* p, int hd, int lane) {
    float s = 0.0f;
    #pragma unroll
    for (int i = 0; i < kFbRegs; i++) {
        const int d = lane + 32 * i;
        if (d < hd) s += a[i] * __bfloat162float(p[d]);
    }
    return warp_sum(s);
}

// One key of the online softmax, in FP32 with expf (like the CPU): score x (finite), value row v.
// m is the running max, l the running sum of exp(score - m), o the running Σ exp(score - m) · v.
__device__ __forceinline__ void online_softmax_step(float (&o)[kFbRegs], float& m, float& l, float x, const bf16* v,
                                                    int hd, int lane) {
    const float m_new = fmaxf(m, x);  // x is finite, so m_new is
    const float alpha = expf(m - m_new), p = expf(x - m_new);
    l = l * alpha + p;
    #pragma unroll
    for (int i = 0; i < kFbRegs; i++) {
        const int d = lane + 32 * i;
        o[i] = o[i] * alpha + (d < hd ? p * __bfloat162float(v[d]) : 0.0f);
    }
    m = m_new;
}

__device__ __forceinline__ void store_row(bf16* p, const float (&r)[kFbRegs], float mul, int hd, int lane) {
    #pragma unroll
    for (int i = 0; i < kFbRegs; i++) {
        const int d = lane + 32 * i;
        if (d < hd) p[d] = __float2bfloat16(r[i] * mul);
    }
}

// The shared memory one block may opt into: 227 KB on sm_90 (H100), 163 KB on sm_80 (A100), 99 KB on
// sm_86/sm_89 (RTX 30/40, A10, L4, L40). The backward kernels come in two tilings: `wide` for the
// first two, and `narrow` (fewer rows in shared memory) for the last, where the wide hd-128 and
// hd-256 tiles (105 to 140 KB) do not fit. (The forward has one tiling per head dim, within 99 KB.)
// Every GPU the backend accepts (sm_80 and newer) allows at least 99 KB: a tiling within that needs
// no narrow twin.
constexpr size_t kMinSmemOptin = 99 * 1024;

// Whether the narrow backward tiling runs even where the wide one fits: ATTENTION_TILES=narrow in the
// environment, to test the narrow kernels on an H100 (the tests run them so in bench/run_gpu.sh).
// Unset, empty or "auto": the GPU decides. Anything else is refused, so a typo never goes unseen.
inline bool force_narrow_tiles() {
    static const bool narrow = env_switch("ATTENTION_TILES", "auto", "narrow", "force the narrow attention tiling");
    return narrow;
}

inline size_t smem_optin() {
    static const size_t optin = [] {
        int dev = 0, v = 0;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
        return (size_t)v;
    }();
    return optin;
}

// The wide tiling of a kernel family, unless the GPU cannot give it `wide_smem` bytes per block (or
// ATTENTION_TILES=narrow asks for the narrow one).
inline bool wide_tiles_fit(size_t wide_smem) { return wide_smem <= smem_optin() && !force_narrow_tiles(); }

// Whether the tensor-core kernels can run: they need hd 64, 128 or 256 and 16-byte aligned tensors
// (cp.async, uint4 stores); shared memory always suffices (a tiling that may not fit has a narrow
// twin within kMinSmemOptin). Otherwise the FP32 fallback runs (correct, much slower at long
// sequences), and the first time for each reason the user is told why.
inline bool tensor_core_ok(int hd, std::initializer_list<const void*> ptrs) {
    static bool told_hd = false, told_align = false;
    auto tell = [&](bool& told, const char* why) {
        if (!told) fprintf(stderr, "note: attention takes the FP32 fallback kernels (correct, slower): %s\n", why);
        told = true;
        return false;
    };
    if (hd != 64 && hd != 128 && hd != 256)
        return tell(told_hd, "tensor-core kernels exist for head dims 64, 128 and 256 only");
    for (const void* p : ptrs)
        if ((uintptr_t)p % 16 != 0) return tell(told_align, "a tensor is not 16-byte aligned");
    return true;
}

}  // namespace attn

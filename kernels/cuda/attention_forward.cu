// Causal grouped-query attention, forward and decoding, on the GPU. Same semantics as the CPU
// reference (kernels/cpu/attention.cpp): q[B*T, nh, hd], k/v[B*T, nkv, hd], out[B*T, nh, hd],
// lse[B*T, nh] (natural log); query t of head h sees key s of kv head h / (nh/nkv) iff s <= t,
// seg[b,s] == seg[b,t] and, with a sliding window, s > t - window; scores are scaled by `scale`.
//
// Two implementations, chosen by the launcher on hd:
// - flash_fwd_kernel<HD> (HD = 64, 128, 256): flash attention 2 on tensor cores (mma.sync m16n8k16,
//   operands from shared memory with ldmatrix; see ptx.cuh for the fragment layouts).
// - fwd_fallback_kernel: one warp per query row, FP32 CUDA cores, any hd <= 256 (the small test
//   models, odd head sizes). Slow but obviously right.
//
// The flash-attention forward, per CTA: one (batch b, head h) and a block of BM queries; each warp
// owns MT row tiles of 16 queries. The CTA walks the key blocks of BN keys from the first that its
// first query's window reaches (block 0 without a window) to the diagonal: blocks wholly above it
// (all keys later than all queries) and, with a window, wholly below it (every key at or before
// q0 - window, out of every query's window, since q0 is the earliest query) are never visited, so
// a sliding window costs O(T·window). For each key block:
//     S = Q Kᵀ               (warp: MT x 16 x BN scores, FP32 in registers: accumulator tiles of 16x8)
//     S = -inf where masked  (causal, window, packed segments, padding; only on tiles that need it)
//     online softmax         m = running row max, l = running row sum of exp, O rescaled by exp(m_old - m_new)
//     O += P V               (P = exp(S - m) rounded to BF16, straight from the S registers)
// At the end O /= l and lse = m + log(l). Everything runs in the log2 domain (exp2 is one
// instruction): scores are multiplied by scale·log2(e), and lse is converted back to natural log.
// Shared memory: Q tile [BM][HD+8], K and V tiles [BN][HD+8] twice each (double buffer: the next
// key block is loaded with cp.async while the current one is computed). The key block's segment ids
// ride in the K tile's row padding (key_seg, attention_common.cuh). The three tilings:
// - HD 64: 8 warps of 16 queries (MT = 1), BM = 128, BN = 64, 54 KB; each warp keeps its Q rows as A
//   fragments in registers. At most 128 registers on sm_90: two CTAs (16 warps) per SM.
// - HD 128: 4 warps of 32 queries (MT = 2), BM = 128, BN = 32, 70 KB (within the 99 KB of sm_86/89
//   too); Q fragments are read from shared memory at each step, since registers hold 2 x 16 x 128
//   accumulators. Every K and V fragment a warp reads then feeds two mma: 48 ldmatrix per 128 mma
//   instead of 64 with 16 queries per warp (the kernel is bound by shared-memory issue, not by the
//   tensor cores: Nsight Compute on an H200).
// - HD 256 (Gemma 3): 4 warps of 16 queries (MT = 1: the O accumulator alone is 16 x 256 / 32 = 128
//   registers a thread), BM = 64, BN = 32, Q fragments from shared memory (64 more registers would
//   not fit beside O). (64 + 4 x 32) rows x 528 bytes = 99 KB exactly: the limit of sm_86/89, and two
//   CTAs (8 warps) per SM on sm_90.
#include <cmath>

#include "kernels/cuda/attention_common.cuh"
#include "model/util.h"

namespace {

using namespace attn;

template <int HD>
struct FwdCfg {
    static_assert(HD == 64 || HD == 128 || HD == 256, "tilings exist for head dims 64, 128 and 256");
    static constexpr int MT = HD == 128 ? 2 : 1;      // row tiles of 16 queries per warp
    static constexpr int NW = HD == 64 ? 8 : 4, NT = NW * 32;  // warps, threads
    static constexpr int BM = 16 * MT * NW;           // queries per CTA
    static constexpr int BN = HD == 64 ? 64 : 32;     // keys per step
    static constexpr int LD = HD + 8;                 // padded row of a shared tile (elements)
    static constexpr bool q_in_regs = HD == 64;       // Q's A fragments held in registers
    static constexpr size_t smem = (size_t)(BM + 4 * BN) * LD * sizeof(bf16);
    static_assert(NT >= BM && NT >= BN, "one thread per query and per key of a block (segment ids)");
};

// Grid: x = b * nh + h, y = query block (reversed, so that the longest blocks — the last ones, which
// see the most keys — start first and the short ones fill in the tail).
// At HD 64 on sm_90 the bound keeps the kernel within 128 registers, so two CTAs (16 warps) share an
// SM: the kernel is latency-bound (Nsight Compute, H200), and one CTA of 8 warps left the tensor
// cores idle. The sm_80 code (what Ampere and Ada GPUs JIT-compile) would spill under that bound, so
// it keeps the plain one. At HD 128 and 256 the bound asks for two CTAs of 4 warps (<= 256 registers).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
constexpr int kFwdMinBlocksHd64 = 1;
#else
constexpr int kFwdMinBlocksHd64 = 2;
#endif
template <int HD>
__global__ void __launch_bounds__(FwdCfg<HD>::NT, HD == 64 ? kFwdMinBlocksHd64 : 2)
    flash_fwd_kernel(bf16* __restrict__ out, float* __restrict__ lse, const bf16* __restrict__ q,
                     const bf16* __restrict__ k, const bf16* __restrict__ v, const int32_t* __restrict__ seg, int T,
                     int nh, int nkv, float scale_log2, int win) {
    using C = FwdCfg<HD>;
    constexpr int MT = C::MT, BM = C::BM, BN = C::BN, LD = C::LD, NT = C::NT;
    extern __shared__ __align__(16) unsigned char attn_smem[];
    bf16* sQ = reinterpret_cast<bf16*>(attn_smem);  // [BM][LD]
    bf16* sK = sQ + BM * LD;                         // [2][BN][LD]
    bf16* sV = sK + 2 * BN * LD;                     // [2][BN][LD]

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gq = lane >> 2, cq = lane & 3;
    const int b = blockIdx.x / nh, h = blockIdx.x % nh, g = h / (nh / nkv);
    const int q0 = (gridDim.y - 1 - blockIdx.y) * BM;
    const int32_t* sg = seg + (size_t)b * T;
    const size_t qstride = (size_t)nh * HD, kstride = (size_t)nkv * HD;  // elements between tokens
    const bf16* qh = q + ((size_t)b * T * nh + h) * HD;                  // token 0 of (b, h)
    const bf16* kh = k + ((size_t)b * T * nkv + g) * HD;
    const bf16* vh = v + ((size_t)b * T * nkv + g) * HD;
    const int nkb = ((q0 + BM < T ? q0 + BM : T) + BN - 1) / BN;  // key blocks up to the diagonal
    // The first key block with a key in some query's window: the one holding q0 - win + 1, where the
    // window of the first (earliest) query starts. 0 without a window.
    const int kb0 = q0 - win + 1 > 0 ? (q0 - win + 1) / BN : 0;

    // Prologue: Q and key block kb0 in one cp.async group.
    load_tile<BM, HD, NT>(sQ, qh, qstride, q0, T, tid);
    load_tile<BN, HD, NT>(sK, kh, kstride, kb0 * BN, T, tid);
    load_tile<BN, HD, NT>(sV, vh, kstride, kb0 * BN, T, tid);
    cp_async_commit();

    // This thread's rows (accumulator rows g and g+8 of each row tile of its warp) and their
    // segments. Rows past T are computed on zeros and never stored.
    const int wrow = warp * 16 * MT;
    int qi[MT][2], qseg[MT][2];
    #pragma unroll
    for (int mt = 0; mt < MT; mt++)
        #pragma unroll
        for (int i = 0; i < 2; i++) {
            qi[mt][i] = q0 + wrow + 16 * mt + gq + 8 * i;
            qseg[mt][i] = qi[mt][i] < T ? sg[qi[mt][i]] : 0;
        }
    // Is the whole query block in one segment (that of its first query)? Then a key block can be
    // classified at once: no key in the segment -> skipped, all keys in it -> no per-element mask.
    const int seg_first = sg[q0];
    const bool q_uniform = __syncthreads_and(tid >= BM || q0 + tid >= T || sg[q0 + tid] == seg_first);
    // Thread tid < BN: the segment id of key tid of the next key block (0 past T).
    int kseg_next = tid < BN && kb0 * BN + tid < T ? sg[kb0 * BN + tid] : 0;

    // Q's A fragments, loaded once when they stay in registers (a [1][1][4] placeholder otherwise).
    uint32_t qf[C::q_in_regs ? MT : 1][C::q_in_regs ? HD / 16 : 1][4];
    float o[MT][HD / 8][4] = {};  // O accumulator: 16 rows x HD per row tile
    float m[MT][2], l[MT][2];     // rows g, g+8 of each row tile (l: this thread's columns only)
    #pragma unroll
    for (int mt = 0; mt < MT; mt++) m[mt][0] = m[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0.0f;

    for (int j = kb0; j < nkb; j++) {
        const int k0 = j * BN, st = (j - kb0) & 1;
        // Start loading key block j+1 into the other buffer (free: the barrier at the end of step j-1
        // guarantees every warp is done reading it). An empty group on the last step keeps the
        // wait_group<1> below uniform.
        if (j + 1 < nkb) {
            load_tile<BN, HD, NT>(sK + (st ^ 1) * BN * LD, kh, kstride, k0 + BN, T, tid);
            load_tile<BN, HD, NT>(sV + (st ^ 1) * BN * LD, vh, kstride, k0 + BN, T, tid);
        }
        cp_async_commit();
        const int kseg = kseg_next;
        if (tid < BN) key_seg<HD>(sK + st * BN * LD, tid) = kseg;
        const bool match = tid < BN && k0 + tid < T && kseg == seg_first;
        if (j + 1 < nkb) kseg_next = tid < BN && k0 + BN + tid < T ? sg[k0 + BN + tid] : 0;
        cp_async_wait<1>();  // this thread's copies of block j (and Q) have landed...
        const int n_match = __syncthreads_count(match);  // ...and everyone's, and the key ids are written
        if constexpr (C::q_in_regs) {
            if (j == kb0) {
                #pragma unroll
                for (int kk = 0; kk < HD / 16; kk++)
                    ldmatrix_x4(qf[0][kk], sQ + (wrow + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8);
            }
        }
        if (q_uniform && n_match == 0) {  // provably fully masked (skipping it is bit-identical)
            __syncthreads();
            continue;
        }
        // A warp whose queries all come before this block's first key has every score masked by
        // causality, and such a step leaves its m, l and o exactly as they are (alpha = 1, p = 0): it
        // skips the math and waits at the barrier, leaving the tensor cores to the warps (of this CTA
        // and the SM's other one) that have work on the diagonal. Bit-identical but for the sign of an
        // exact zero in contrived inputs (an o that a step of underflowing alpha made -0 stays -0 here,
        // where adding the masked step's +0 gave +0), as with the CTA-level skip above. Likewise a
        // warp whose first query's window starts after this block's last key (k0 + BN - 1 <=
        // q0 + wrow - win): every key is out of every window of its queries (the CTA's later warps,
        // in the first key blocks of a windowed row).
        const int wq_first = q0 + wrow, wq_last = q0 + wrow + 16 * MT - 1;  // this warp's queries
        if (k0 <= wq_last && k0 + BN - 1 > wq_first - win) {
            // No mask needed: one segment throughout, all keys valid, every key <= every query, and
            // every key in every window of the warp's queries (the first key in the last query's).
            const bool no_mask = q_uniform && n_match == BN && k0 + BN - 1 <= q0 && k0 > wq_last - win;
            const bf16* tK = sK + st * BN * LD;
            const bf16* tV = sV + st * BN * LD;

            // S = Q Kᵀ: s[mt][n] is the 16x8 tile of keys k0 + 8n .. k0 + 8n + 7 of row tile mt.
            float s[MT][BN / 8][4] = {};
            if constexpr (C::q_in_regs) {
                mma_scores_from<MT, BN, HD, LD>(s, [&](uint32_t (&af)[MT][4], int kk) {
                    #pragma unroll
                    for (int r = 0; r < 4; r++) af[0][r] = qf[0][kk][r];
                }, tK, lane);
            } else {
                mma_scores<MT, BN, HD, LD>(s, sQ + wrow * LD, tK, lane);
            }
            // Element e of tile n of row tile mt is (query qi[mt][e>>1], key column 8n + 2*cq + (e&1)).
            if (!no_mask) {  // branch-free: one select per score
                #pragma unroll
                for (int n = 0; n < BN / 8; n++) {
                    const int c0 = n * 8 + 2 * cq;
                    const int ks[2] = {key_seg<HD>(tK, c0), key_seg<HD>(tK, c0 + 1)};
                    #pragma unroll
                    for (int mt = 0; mt < MT; mt++)
                        #pragma unroll
                        for (int e = 0; e < 4; e++) {
                            const int ki = k0 + c0 + (e & 1), kseg_e = ks[e & 1], i = e >> 1;
                            const bool masked = (ki > qi[mt][i]) | (ki >= T) | (kseg_e != qseg[mt][i]) |
                                                (ki <= qi[mt][i] - win);
                            s[mt][n][e] = masked ? -INFINITY : s[mt][n][e];
                        }
                }
            }
            // Online softmax, per row. The row max is reduced over the 4 threads of a group (they hold the
            // row's BN columns between them); the row sum stays per thread until the end.
            #pragma unroll
            for (int mt = 0; mt < MT; mt++)
                #pragma unroll
                for (int i = 0; i < 2; i++) {
                    float mx = -INFINITY;
                    #pragma unroll
                    for (int n = 0; n < BN / 8; n++) mx = fmaxf(mx, fmaxf(s[mt][n][2 * i], s[mt][n][2 * i + 1]));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                    const float m_new = fmaxf(m[mt][i], mx * scale_log2);
                    // A row with no allowed key so far has m = -inf; subtract 0 then, so exp2(-inf) = 0 and
                    // never exp2(-inf - -inf) = NaN.
                    const float m_use = m_new == -INFINITY ? 0.0f : m_new;
                    const float alpha = exp2_ftz(m[mt][i] - m_use);
                    m[mt][i] = m_new;
                    float rs = 0.0f;
                    #pragma unroll
                    for (int n = 0; n < BN / 8; n++) {
                        #pragma unroll
                        for (int e = 2 * i; e < 2 * i + 2; e++) {
                            s[mt][n][e] = exp2_ftz(fmaf(s[mt][n][e], scale_log2, -m_use));
                            rs += s[mt][n][e];
                        }
                    }
                    l[mt][i] = l[mt][i] * alpha + rs;
                    #pragma unroll
                    for (int n = 0; n < HD / 8; n++) {
                        o[mt][n][2 * i] *= alpha;
                        o[mt][n][2 * i + 1] *= alpha;
                    }
                }
            // O += P V, 16 keys (one k-step) at a time; P's A fragments come from two S tiles.
            mma_acc_pb<MT, BN, HD, LD>(o, s, tV, lane);
        }
        __syncthreads();  // everyone is done with buffer st before it is refilled
    }

    // Epilogue: full row sums, O / l, lse. A row with no allowed key (impossible for a real query:
    // it always sees itself) would get O = 0 and lse = -inf, as on the CPU. Each row tile is staged
    // in the warp's own rows of sQ (no other warp reads them), then stored with 16-byte writes.
    #pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        float inv[2];
        #pragma unroll
        for (int i = 0; i < 2; i++) {
            float t = l[mt][i];
            t += __shfl_xor_sync(0xffffffffu, t, 1);
            t += __shfl_xor_sync(0xffffffffu, t, 2);
            inv[i] = t > 0.0f ? 1.0f / t : 0.0f;
            if (cq == 0 && qi[mt][i] < T)
                lse[((size_t)b * T + qi[mt][i]) * nh + h] = t > 0.0f ? (m[mt][i] + log2f(t)) * kLn2 : -INFINITY;
        }
        acc_to_smem<HD>(sQ, wrow + 16 * mt, o[mt], inv[0], inv[1], lane);
    }
    __syncwarp();
    #pragma unroll
    for (int mt = 0; mt < MT; mt++)
        store_rows16<HD>(out + ((size_t)b * T * nh + h) * HD, qstride, q0 + wrow + 16 * mt, T, sQ + (wrow + 16 * mt) * LD,
                         lane);
}

// Fallback forward: one warp per (b, t, h) query row, lanes over the head dimension, keys one at a
// time (those of t's window: from t - win + 1 on) with the online softmax in FP32 (expf, like the CPU).
__global__ void fwd_fallback_kernel(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                                    const int32_t* seg, int B, int T, int nh, int nkv, int hd, float scale, int win) {
    const int lane = threadIdx.x & 31;
    const size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;  // (b*T + t)*nh + h
    if (row >= (size_t)B * T * nh) return;  // whole warps only: no block barriers here
    const int h = (int)(row % nh), t = (int)(row / nh % T), b = (int)(row / nh / T), g = h / (nh / nkv);
    const int32_t* sg = seg + (size_t)b * T;
    float qv[kFbRegs], o[kFbRegs] = {};
    load_row(qv, q + row * hd, hd, lane);
    float m = -INFINITY, l = 0.0f;
    for (int s = t - win + 1 > 0 ? t - win + 1 : 0; s <= t; s++) {
        if (sg[s] != sg[t]) continue;
        const size_t kv = (((size_t)b * T + s) * nkv + g) * hd;
        online_softmax_step(o, m, l, dot_row(qv, k + kv, hd, lane) * scale, v + kv, hd, lane);
    }
    store_row(out + row * hd, o, l > 0.0f ? 1.0f / l : 0.0f, hd, lane);
    if (lane == 0) lse[row] = l > 0.0f ? m + logf(l) : -INFINITY;
}

// Decoding: one block of kDecWarps warps per (sequence s, query head h). Warp w takes cached
// positions j = j0 + w, j0 + w + kDecWarps, ... < len[s] (j0 = len[s] - win, the window's first, or 0),
// with its own online-softmax state (lanes over the head dimension); the warps' states are then
// merged in a fixed order (deterministic, no atomics).
constexpr int kDecWarps = 4;

__global__ void decode_kernel(bf16* out, const bf16* q, const bf16* kcache, const bf16* vcache, const int32_t* len,
                              int max_T, int nh, int nkv, int hd, float scale, int win) {
    extern __shared__ __align__(16) unsigned char attn_smem[];
    float* part = reinterpret_cast<float*>(attn_smem);  // [kDecWarps][hd + 2]: o[hd], m, l
    const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
    const int s = blockIdx.x / nh, h = blockIdx.x % nh, g = h / (nh / nkv), n = len[s];
    const bf16* K = kcache + (size_t)s * max_T * nkv * hd;
    const bf16* V = vcache + (size_t)s * max_T * nkv * hd;
    float qv[kFbRegs], o[kFbRegs] = {};
    load_row(qv, q + ((size_t)s * nh + h) * hd, hd, lane);
    float m = -INFINITY, l = 0.0f;
    for (int j = (n - win > 0 ? n - win : 0) + warp; j < n; j += kDecWarps) {
        const size_t kv = ((size_t)j * nkv + g) * hd;
        online_softmax_step(o, m, l, dot_row(qv, K + kv, hd, lane) * scale, V + kv, hd, lane);
    }
    float* mine = part + warp * (hd + 2);
    #pragma unroll
    for (int i = 0; i < kFbRegs; i++)
        if (lane + 32 * i < hd) mine[lane + 32 * i] = o[i];
    if (lane == 0) mine[hd] = m, mine[hd + 1] = l;
    __syncthreads();
    // Merge: M = max_w m_w, L = Σ_w l_w e^(m_w - M), O = Σ_w o_w e^(m_w - M) / L. A warp that saw no
    // key has m = -inf and weighs 0; len = 0 gives zeros, like the CPU.
    float M = -INFINITY;
    for (int w = 0; w < kDecWarps; w++) M = fmaxf(M, part[w * (hd + 2) + hd]);
    float L = 0.0f;
    for (int w = 0; w < kDecWarps; w++)
        if (M != -INFINITY) L += part[w * (hd + 2) + hd + 1] * expf(part[w * (hd + 2) + hd] - M);
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float acc = 0.0f;
        for (int w = 0; w < kDecWarps; w++)
            if (M != -INFINITY) acc += part[w * (hd + 2) + d] * expf(part[w * (hd + 2) + hd] - M);
        out[((size_t)s * nh + h) * hd + d] = __float2bfloat16(L > 0.0f ? acc / L : 0.0f);
    }
}

// One tiling per head dim, within the 99 KB of shared memory every accepted GPU (sm_80+) allows.
template <int HD>
void launch_flash_fwd(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, const int32_t* seg, int B,
                      int T, int nh, int nkv, float scale, int win) {
    using C = FwdCfg<HD>;
    static_assert(C::smem <= kMinSmemOptin, "the forward tiling must fit every GPU");
    static const bool smem_ok = [] {  // once per instantiation: allow more than 48 KB of shared memory
        CUDA_CHECK(cudaFuncSetAttribute(flash_fwd_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)C::smem));
        return true;
    }();
    (void)smem_ok;
    const unsigned nqb = ceil_div(T, C::BM);
    if (nqb > 65535) fail("attention_forward: T = %d is too long for one grid (at most %d)", T, 65535 * C::BM);
    dim3 grid(B * nh, nqb);
    flash_fwd_kernel<HD><<<grid, C::NT, C::smem>>>(out, lse, q, k, v, seg, T, nh, nkv, scale * kLog2e, win);
    CUDA_LAUNCH_CHECK();
}

}  // namespace

namespace cuda {

void attention_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, const int32_t* seg, int B,
                       int T, int nh, int nkv, int hd, float scale, int window) {
    if (B <= 0 || T <= 0 || nh <= 0) return;
    if (nkv <= 0 || nh % nkv != 0) fail("attention_forward: %d query heads do not share %d kv heads evenly", nh, nkv);
    if (hd > kMaxFallbackHd) fail("attention_forward: head dim %d is not supported (at most %d)", hd, kMaxFallbackHd);
    const int win = kernel_window(window, T);
    if (tensor_core_ok(hd, {out, q, k, v})) {
        if (hd == 64) launch_flash_fwd<64>(out, lse, q, k, v, seg, B, T, nh, nkv, scale, win);
        else if (hd == 128) launch_flash_fwd<128>(out, lse, q, k, v, seg, B, T, nh, nkv, scale, win);
        else launch_flash_fwd<256>(out, lse, q, k, v, seg, B, T, nh, nkv, scale, win);
        return;
    }
    const size_t rows = (size_t)B * T * nh;
    fwd_fallback_kernel<<<ceil_div(rows, 4), 128, 0>>>(out, lse, q, k, v, seg, B, T, nh, nkv, hd, scale, win);
    CUDA_LAUNCH_CHECK();
}

void attention_decode(bf16* out, const bf16* q, const bf16* kcache, const bf16* vcache, const int32_t* len, int S,
                      int max_T, int nh, int nkv, int hd, float scale, int window) {
    if (S <= 0 || nh <= 0) return;
    if (nkv <= 0 || nh % nkv != 0) fail("attention_decode: %d query heads do not share %d kv heads evenly", nh, nkv);
    if (hd > kMaxFallbackHd) fail("attention_decode: head dim %d is not supported (at most %d)", hd, kMaxFallbackHd);
    const size_t smem = (size_t)kDecWarps * (hd + 2) * sizeof(float);
    decode_kernel<<<(unsigned)((size_t)S * nh), kDecWarps * 32, smem>>>(out, q, kcache, vcache, len, max_T, nh, nkv, hd,
                                                                       scale, kernel_window(window, max_T));
    CUDA_LAUNCH_CHECK();
}

}  // namespace cuda

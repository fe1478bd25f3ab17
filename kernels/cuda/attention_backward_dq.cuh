// The attention backward's dQ kernel (kernels/cuda/attention_backward.cu has the rest and says why dQ
// has a kernel of its own): a CTA per query block recomputes S and dP, which the dK/dV kernel computes
// too. Included by attention_backward.cu only.
#pragma once
#include <type_traits>

#include "kernels/cuda/attention_common.cuh"

namespace attn {

// Grid x = b * nh + h, y = query block (reversed: longest first). NW warps, each owning MT row tiles
// of 16 queries; key blocks of BN = 64 with the same double-buffered cp.async pipeline and the same
// mask logic as the forward (attention_forward.cu). Per warp and key block:
//   S  = Q Kᵀ, dP = dO Vᵀ          (A = Q, dO rows from shared memory; B = K, V rows, non-transposed)
//   P  = exp2(S·scale·log2e - lse·log2e), 0 where masked
//   dS = P ∘ (dP - D)
//   dQ += dS K                      (A = dS from registers; B = K rows, transposed ldmatrix)
// As in dK/dV, every K and V fragment is read from shared memory by every warp, so a warp owns 32
// queries (MT = 2): at HD 64, 64 ldmatrix per 192 mma instead of 56 per 96, for 2 CTAs of 4 warps
// per SM instead of 4; at HD 128 with key blocks of BN = 32 (the 2 x 16 x 128 accumulators take the
// registers that wider score tiles would), 80 ldmatrix per 192 mma instead of 112, at the same 2
// CTAs of 4 warps. 254 registers either way. At HD 256 the dQ accumulator of 16 queries is 128
// registers a thread, so a warp owns 16 queries (MT = 1), 4 warps, with key blocks of BN = 32 (16 in
// the narrow tiling: 64 ldmatrix per 96 mma instead of 128 per 192, for 2 CTAs per SM instead of 1).
// Shared memory: Q and dO [BM][HD+8], K and V [2][BN][HD+8]: 105 KB at HD 128, 74 KB at HD 64, 132 KB
// at HD 256; the narrow tilings (99 KB GPUs) have 2 warps of 16 queries, BM = 32, BN = 64 at HD 128:
// 87 KB; BN = 16 at HD 256: 99 KB exactly. The key block's segment ids ride in the K tile's row
// padding (key_seg), as in the forward.
template <int HD, bool narrow>
struct DqCfg {
    static_assert(HD == 64 || HD == 128 || HD == 256, "tilings exist for head dims 64, 128 and 256");
    static constexpr int MT = narrow || HD == 256 ? 1 : 2, NW = narrow && HD != 256 ? 2 : 4, NT = NW * 32,
                         BM = 16 * MT * NW, BN = HD == 256 ? (narrow ? 16 : 32) : HD == 128 && !narrow ? 32 : 64,
                         LD = HD + 8;
    static constexpr size_t smem = (size_t)(2 * BM + 4 * BN) * LD * sizeof(bf16);
    static_assert(NT >= BM && NT >= BN, "one thread per query and per key of a block (segment ids)");
};

template <int HD, bool narrow>
// The wide tilings' bound asks for <= 256 registers a thread (2 CTAs per SM), the narrow ones' for one CTA.
__global__ void __launch_bounds__(DqCfg<HD, narrow>::NT, narrow ? 1 : 2)
    flash_dq_kernel(bf16* __restrict__ dq, const bf16* __restrict__ dout, const float* __restrict__ lse,
                    const float* __restrict__ Dg, const bf16* __restrict__ q, const bf16* __restrict__ k,
                    const bf16* __restrict__ v, const int32_t* __restrict__ seg, int T, int nh, int nkv, float scale,
                    float scale_log2, int win) {
    using C = DqCfg<HD, narrow>;
    constexpr int MT = C::MT, BM = C::BM, BN = C::BN, LD = C::LD, NT = C::NT;
    extern __shared__ __align__(16) unsigned char attn_smem[];
    bf16* sQ = reinterpret_cast<bf16*>(attn_smem);  // [BM][LD]
    bf16* sdO = sQ + BM * LD;                        // [BM][LD]
    bf16* sK = sdO + BM * LD;                        // [2][BN][LD]
    bf16* sV = sK + 2 * BN * LD;                     // [2][BN][LD]

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gq = lane >> 2, cq = lane & 3;
    const int b = blockIdx.x / nh, h = blockIdx.x % nh, g = h / (nh / nkv);
    const int q0 = (gridDim.y - 1 - blockIdx.y) * BM;
    const int32_t* sg = seg + (size_t)b * T;
    const size_t qstride = (size_t)nh * HD, kstride = (size_t)nkv * HD;
    const size_t qoff = ((size_t)b * T * nh + h) * HD, koff = ((size_t)b * T * nkv + g) * HD;
    const int nkb = ((q0 + BM < T ? q0 + BM : T) + BN - 1) / BN;
    // As in the forward: the first key block in the window of the first query (0 without a window).
    const int kb0 = q0 - win + 1 > 0 ? (q0 - win + 1) / BN : 0;

    load_tile<BM, HD, NT>(sQ, q + qoff, qstride, q0, T, tid);
    load_tile<BM, HD, NT>(sdO, dout + qoff, qstride, q0, T, tid);
    load_tile<BN, HD, NT>(sK, k + koff, kstride, kb0 * BN, T, tid);
    load_tile<BN, HD, NT>(sV, v + koff, kstride, kb0 * BN, T, tid);
    cp_async_commit();

    // This thread's query rows: wrow + 16m + gq and + 8 for each row tile m of the warp.
    const int wrow = warp * 16 * MT;
    int qi[MT][2], qseg[MT][2];
    float lse2[MT][2], Dr[MT][2];  // lse in log2 units, D; 0 for rows past T (masked out anyway)
    #pragma unroll
    for (int m = 0; m < MT; m++)
        #pragma unroll
        for (int i = 0; i < 2; i++) {
            qi[m][i] = q0 + wrow + 16 * m + gq + 8 * i;
            const bool ok = qi[m][i] < T;
            const size_t r = ((size_t)b * T + qi[m][i]) * nh + h;
            qseg[m][i] = ok ? sg[qi[m][i]] : 0;
            lse2[m][i] = ok ? lse[r] * kLog2e : 0.0f;
            Dr[m][i] = ok ? Dg[r] : 0.0f;
        }
    const int seg_first = sg[q0];
    const bool q_uniform = __syncthreads_and(tid >= BM || q0 + tid >= T || sg[q0 + tid] == seg_first);
    int kseg_next = tid < BN && kb0 * BN + tid < T ? sg[kb0 * BN + tid] : 0;  // key tid of the next block

    float acc[MT][HD / 8][4] = {};  // dQ (unscaled) for the warp's rows
    for (int j = kb0; j < nkb; j++) {
        const int k0 = j * BN, st = (j - kb0) & 1;
        if (j + 1 < nkb) {
            load_tile<BN, HD, NT>(sK + (st ^ 1) * BN * LD, k + koff, kstride, k0 + BN, T, tid);
            load_tile<BN, HD, NT>(sV + (st ^ 1) * BN * LD, v + koff, kstride, k0 + BN, T, tid);
        }
        cp_async_commit();
        const int kseg = kseg_next;
        if (tid < BN) key_seg<HD>(sK + st * BN * LD, tid) = kseg;
        const bool match = tid < BN && k0 + tid < T && kseg == seg_first;
        if (j + 1 < nkb) kseg_next = tid < BN && k0 + BN + tid < T ? sg[k0 + BN + tid] : 0;
        cp_async_wait<1>();
        const int n_match = __syncthreads_count(match);
        if (q_uniform && n_match == 0) {
            __syncthreads();
            continue;
        }
        // A warp whose queries all come before the block's first key, or whose first query's window
        // starts after the block's last key: P = 0 throughout, dQ += 0. It skips the math (as in the
        // forward; bit-identical) and waits at the barrier. At HD 128 and 256: at HD 64 the test made
        // the backward 0.6-1.5% slower on an H100 (the warp skip's RESULTS; measured without windows).
        const int wq_first = q0 + wrow, wq_last = q0 + wrow + 16 * MT - 1;  // this warp's queries
        if (HD == 64 || (k0 <= wq_last && k0 + BN - 1 > wq_first - win)) {
            // No mask: as in the forward (one segment, all keys real, every key <= every query and
            // within every window of the warp's queries).
            const bool no_mask = q_uniform && n_match == BN && k0 + BN - 1 <= q0 && k0 > wq_last - win;
            const bf16* tK = sK + st * BN * LD;
            const bf16* tV = sV + st * BN * LD;

            float s[MT][BN / 8][4] = {}, dp[MT][BN / 8][4] = {};  // S = Q Kᵀ, dP = dO Vᵀ
            mma_scores_pair<MT, BN, HD, LD>(s, dp, sQ + wrow * LD, sdO + wrow * LD, tK, tV, lane);
            // dS into s. Element e of tile n of row tile m: query qi[m][e>>1], key column 8n + 2*cq +
            // (e&1). As in the dK/dV kernel: a loop without mask for the unmasked blocks, a branch-free
            // mask otherwise.
            auto dscores = [&](auto masked_tag) {
                constexpr bool kMasked = decltype(masked_tag)::value;
                #pragma unroll
                for (int n = 0; n < BN / 8; n++) {
                    const int c0 = n * 8 + 2 * cq;
                    int ks[2] = {0, 0};  // the segments of key columns c0, c0 + 1 (read only when masking)
                    if (kMasked) ks[0] = key_seg<HD>(tK, c0), ks[1] = key_seg<HD>(tK, c0 + 1);
                    #pragma unroll
                    for (int m = 0; m < MT; m++)
                        #pragma unroll
                        for (int e = 0; e < 4; e++) {
                            const int i = e >> 1;
                            float p = exp2_ftz(fmaf(s[m][n][e], scale_log2, -lse2[m][i]));
                            if (kMasked) {
                                const int ki = k0 + c0 + (e & 1);
                                const bool masked = (ki > qi[m][i]) | (ki >= T) |
                                                    (ks[e & 1] != qseg[m][i]) | (ki <= qi[m][i] - win);
                                p = masked ? 0.0f : p;
                            }
                            s[m][n][e] = p * (dp[m][n][e] - Dr[m][i]);
                        }
                }
            };
            if (no_mask) dscores(std::false_type{});
            else dscores(std::true_type{});
            // dQ += dS K: B[k = key][n = d] = K[key][d], the transposed load (as V in the forward).
            mma_acc_pb<MT, BN, HD, LD>(acc, s, tK, lane);
        }
        __syncthreads();
    }
    // The warp's rows of sQ are read by no one else: stage dQ · scale there and store.
    #pragma unroll
    for (int m = 0; m < MT; m++) acc_to_smem<HD>(sQ, wrow + 16 * m, acc[m], scale, scale, lane);
    __syncwarp();
    #pragma unroll
    for (int m = 0; m < MT; m++)
        store_rows16<HD>(dq + qoff, qstride, q0 + wrow + 16 * m, T, sQ + (wrow + 16 * m) * LD, lane);
}

}  // namespace attn

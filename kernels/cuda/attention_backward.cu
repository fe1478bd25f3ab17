// Attention backward on the GPU; the math of the CPU reference (kernels/cpu/attention.cpp), with P
// recomputed from the saved lse:
//   P = exp(S - lse), S = Q Kᵀ · scale     D = rowsum(dO ∘ O)        dP = dO Vᵀ
//   dS = P ∘ (dP - D)                      dQ = dS K · scale          dK = dSᵀ Q · scale     dV = Pᵀ dO
// dq, dk, dv are overwritten (BF16), everything is accumulated in FP32. The mask is the forward's:
// key s is seen by query t iff s <= t, same segment and, with a sliding window, s > t - window.
//
// Deterministic: no floating-point atomics, so the same inputs give the same bits on every run.
//   1. bwd_D_vec_kernel    D = rowsum(dO ∘ O), one FP32 per (token, head), in cuda_scratch.
//   2. flash_dq_kernel     (the default, "split"; attention_backward_dq.cuh) a CTA owns BM queries of
//                          one head and loops over the key blocks they see, recomputing S and P: dQ
//                          is summed in its registers.
//   3. flash_bwd_kernel    a CTA owns BN keys of one kv head and loops over ALL query blocks that see
//                          them, of EVERY query head of its GQA group: dK and dV (which sum over the
//                          group's heads) are summed in its registers, in a fixed order.
// With a window both loops are O(window) long, so the backward costs O(T·window) like the forward.
// 7 tile products (S, dP, dQ | S, dP, dV, dK) where FlashAttention-2 has 5: it sums dQ in the dK/dV
// kernel with floating-point atomics, whose order (and so dq's bits) changes from run to run. A
// deterministic version of that (the CTAs of a query block adding their parts to an FP32 sum in key
// block order, each waiting on its predecessor's flag) was built and timed on an H200: 5-14% slower
// than this pair at head dims 64, 128 and 256 (bench/RESULTS.md, 2026-11-27), so it was removed.
//
// Tensor-core path for hd 64, 128 and 256 (fragment layouts in ptx.cuh); an FP32 fallback
// (one warp per query row for dQ, one warp per key row for dK/dV) for any other hd <= 256.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "kernels/cuda/attention_backward_dq.cuh"
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/packed.cuh"
#include "kernels/cuda/reduce.cuh"
#include "model/util.h"

namespace {

using namespace attn;

// D[row] = Σ_d dO[row, d] · O[row, d] for the B*T*nh rows: one warp per row, for any hd.
__global__ void bwd_D_kernel(float* D, const bf16* dout, const bf16* out, size_t rows, int hd) {
    const size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= rows) return;
    const int lane = threadIdx.x & 31;
    float s = 0.0f;
    for (int d = lane; d < hd; d += 32) s += __bfloat162float(dout[row * hd + d]) * __bfloat162float(out[row * hd + d]);
    s = warp_sum(s);
    if (lane == 0) D[row] = s;
}

// The same at the tensor-core head dims (64, 128, 256) with 16-byte loads: a thread takes one chunk of
// 8 values of dO and of O, and the HD/8 consecutive lanes of a row sum theirs with shuffles, so a warp
// covers 256/HD rows at a time. (The warp per row, 2-byte loads, read ~1.3 TB/s: 0.8 ms of a
// Llama-3.2-1B step on an H100.) Every lane takes part in the shuffles, those past the last row with 0.
template <int HD>
__global__ void bwd_D_vec_kernel(float* D, const bf16* dout, const bf16* out, size_t rows) {
    constexpr int L = HD / 8;  // lanes (chunks) per row
    const size_t chunk = (size_t)blockIdx.x * blockDim.x + threadIdx.x, row = chunk / L;
    float s = 0.0f;
    if (row < rows) {
        const uint4 a_raw = load_raw8(dout, chunk * 8), b_raw = load_raw8(out, chunk * 8);
        float a[8], b[8];
        unpack8(a, a_raw);
        unpack8(b, b_raw);
        #pragma unroll
        for (int i = 0; i < 8; i++) s = fmaf(a[i], b[i], s);
    }
    s = warp_reduce<SumOp, L>(s);
    if (row < rows && threadIdx.x % L == 0) D[row] = s;
}

void launch_bwd_D(float* D, const bf16* dout, const bf16* out, size_t rows, int hd) {
    const bool vec = (hd == 64 || hd == 128 || hd == 256) && aligned16(dout) && aligned16(out);
    auto launch = [&](auto kernel) { kernel<<<ceil_div(rows * (hd / 8), 256), 256>>>(D, dout, out, rows); };
    if (!vec) bwd_D_kernel<<<ceil_div(rows, 8), 256>>>(D, dout, out, rows, hd);
    else if (hd == 64) launch(bwd_D_vec_kernel<64>);
    else if (hd == 128) launch(bwd_D_vec_kernel<128>);
    else launch(bwd_D_vec_kernel<256>);
    CUDA_LAUNCH_CHECK();
}

// ---------------------------------------------------------------------------------------------------
// dK, dV. A CTA owns BN = 128 keys of one kv head (64 in the narrow tiling), their K and V rows
// resident in shared memory, and walks the query blocks of BM = 32 queries that can see them, from the
// diagonal on, for each query head of its GQA group in turn, double-buffering Q, dO (cp.async) and
// their lse, D, segment ids (through registers). Per warp
// the tile is transposed — keys are the rows — so that dK, dV stay in registers:
//   Sᵀ  = K Qᵀ, dPᵀ = V dOᵀ         (A = K, V rows; B = Q, dO rows, non-transposed)
//   Pᵀ  = exp2(Sᵀ·scale·log2e - lse[query]·log2e), 0 where masked
//   dV += Pᵀ dO                      (A = Pᵀ from registers; B = dO rows, transposed)
//   dSᵀ = Pᵀ ∘ (dPᵀ - D[query])
//   dK += dSᵀ Q                      (A = dSᵀ from registers; B = Q rows, transposed)
// Every B fragment (Q, dO) is read from shared memory by every warp that needs it, so the ldmatrix
// per mma fall as a warp owns more keys. A warp owns 32 keys (MT = 2 row tiles of 16):
// - HD 64: one warp does all four products for its keys, 4 warps: 48 ldmatrix per 128 mma (72 with
//   16 keys: the profile showed that version issue-bound on ldmatrix, 8.1 cycles per instruction at
//   2 warps per scheduler). Registers: 2 x 2 x 16 x 64 accumulators, 2 x 2 x 16 x 32 score tiles.
// - HD 128 (PAIR): the dK and dV accumulators of 32 keys would take 256 registers, so two warps share
//   the keys. The even warp computes Sᵀ, Pᵀ and dV; the odd one dPᵀ, dSᵀ and dK; Pᵀ passes from the
//   one to the other through shared memory in the accumulator layout (each lane reads back what the
//   same lane of its partner wrote: float4 per lane, no bank conflicts). Per warp 48 ldmatrix and 8
//   float4 stores or loads per 128 mma, against 80 ldmatrix per 128 mma when each of 8 warps did all
//   four products for 16 keys; the arithmetic is the same, so dK and dV are bit-identical to it.
// - HD 256 (PAIR): one accumulator of 16 keys is already 128 registers, so a pair owns 16 keys (MT =
//   1): 4 pairs, BN = 64.
//
// Shared memory: K, V [BN][HD+8], Q, dO [2][BM][HD+8], when paired Pᵀ [pairs][16·MT][BM] FP32: 118 KB
// at HD 128, 55 KB at HD 64, 140 KB at HD 256. The narrow tilings (99 KB GPUs) have 4 warps: BN = 64
// at HD 128 (76 KB); BN = 32 and query blocks of BM = 16 at HD 256 (68 KB).
template <int HD, bool narrow>
struct BwdCfg {
    static_assert(HD == 64 || HD == 128 || HD == 256, "tilings exist for head dims 64, 128 and 256");
    static constexpr bool PAIR = HD >= 128;
    static constexpr int MT = HD == 256 ? 1 : 2, NW = narrow || !PAIR ? 4 : 8, NT = NW * 32,
                         BN = 16 * MT * (PAIR ? NW / 2 : NW), BM = HD == 256 && narrow ? 16 : 32, LD = HD + 8;
    static constexpr int PX = PAIR ? NW / 2 * MT * BM * 16 : 0;  // floats of Pᵀ for all pairs (16·MT keys x BM each)
    static constexpr size_t smem = (size_t)(2 * BN + 4 * BM) * LD * sizeof(bf16) + 3 * BM * sizeof(float) +
                                   PX * sizeof(float);
    static_assert(NT >= BN && NT >= BM, "one thread per key and per query of a block (segment ids, lse, D)");
    static_assert(BN % BM == 0, "a key block starts a query block (qb_first = k0 / BM)");
};

template <int HD, bool narrow>
__global__ void __launch_bounds__(BwdCfg<HD, narrow>::NT)
    flash_bwd_kernel(bf16* __restrict__ dk, bf16* __restrict__ dv, const bf16* __restrict__ dout,
                     const float* __restrict__ lse, const float* __restrict__ Dg, const bf16* __restrict__ q,
                     const bf16* __restrict__ k, const bf16* __restrict__ v, const int32_t* __restrict__ seg, int T,
                     int nh, int nkv, float scale, float scale_log2, int win) {
    using C = BwdCfg<HD, narrow>;
    constexpr int MT = C::MT, BM = C::BM, BN = C::BN, LD = C::LD, NT = C::NT;
    extern __shared__ __align__(16) unsigned char attn_smem[];
    bf16* sK = reinterpret_cast<bf16*>(attn_smem);  // [BN][LD]
    bf16* sV = sK + BN * LD;                         // [BN][LD]
    bf16* sQ = sV + BN * LD;                         // [2][BM][LD]
    bf16* sdO = sQ + 2 * BM * LD;                    // [2][BM][LD]
    float* sLse2 = reinterpret_cast<float*>(sdO + 2 * BM * LD);  // [BM] lse·log2e of the current queries
    float* sD = sLse2 + BM;                                      // [BM]
    int* sQseg = reinterpret_cast<int*>(sD + BM);                // [BM]
    float4* sP = reinterpret_cast<float4*>(sQseg + BM);         // PAIR: [pair][MT][BM/8][32 lanes] Pᵀ tiles

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gq = lane >> 2, cq = lane & 3;
    // PAIR: role 0 (even warp) computes Sᵀ, Pᵀ, dV; role 1 (odd warp) dPᵀ, dSᵀ, dK, for the same keys.
    const int role = C::PAIR ? warp & 1 : 0, owner = C::PAIR ? warp >> 1 : warp;
    float4* pair_P = sP + owner * MT * (BM / 8) * 32;
    // The key block jb and (b, g): grid x = b * nkv + g, y = jb (block 0, which sees the most queries,
    // first).
    const int jb = blockIdx.y, bg = blockIdx.x;
    const int group = nh / nkv, b = bg / nkv, g = bg % nkv;
    const int k0 = jb * BN;
    const int32_t* sg = seg + (size_t)b * T;
    const size_t qstride = (size_t)nh * HD, kstride = (size_t)nkv * HD;
    const size_t koff = ((size_t)b * T * nkv + g) * HD;
    // The queries that can see a key of the block: from its first key (the diagonal) to before
    // q_end, where the window of its last key k0 + BN - 1 ends (query t sees key s only if
    // t < s + win), or T. Step it: query head g*group + it / nqb, query block qb_first + it % nqb.
    const int q_end = k0 + BN - 1 + win < T ? k0 + BN - 1 + win : T;
    const int qb_first = k0 / BM, qb_last = (q_end + BM - 1) / BM - 1, nqb = qb_last - qb_first + 1, n_it = group * nqb;
    auto head_of = [&](int it) { return g * group + it / nqb; };
    auto qb_of = [&](int it) { return qb_first + it % nqb; };
    auto qoff_of = [&](int it) { return ((size_t)b * T * nh + head_of(it)) * HD; };

    load_tile<BN, HD, NT>(sK, k + koff, kstride, k0, T, tid);
    load_tile<BN, HD, NT>(sV, v + koff, kstride, k0, T, tid);
    load_tile<BM, HD, NT>(sQ, q + qoff_of(0), qstride, qb_of(0) * BM, T, tid);
    load_tile<BM, HD, NT>(sdO, dout + qoff_of(0), qstride, qb_of(0) * BM, T, tid);
    cp_async_commit();

    // This thread's key rows: wrow + 16m + gq and + 8 for each row tile m of the warp.
    const int wrow = owner * 16 * MT;
    int ki[MT][2], kseg[MT][2];
    #pragma unroll
    for (int m = 0; m < MT; m++)
        #pragma unroll
        for (int i = 0; i < 2; i++) {
            ki[m][i] = k0 + wrow + 16 * m + gq + 8 * i;
            kseg[m][i] = ki[m][i] < T ? sg[ki[m][i]] : 0;
        }
    const int seg_first = sg[k0];
    const bool k_uniform = __syncthreads_and(tid >= BN || k0 + tid >= T || sg[k0 + tid] == seg_first);
    const bool k_full = k_uniform && k0 + BN <= T;  // ... and every key is a real token

    // Per-query data of the next query block, staged in registers (thread i < BM holds query i).
    int pf_seg = 0;
    float pf_lse2 = 0.0f, pf_D = 0.0f;
    auto prefetch = [&](int it) {
        const int t = qb_of(it) * BM + tid;
        const bool ok = tid < BM && t < T;
        const size_t r = ((size_t)b * T + (ok ? t : 0)) * nh + head_of(it);
        pf_seg = ok ? sg[t] : 0;
        pf_lse2 = ok ? lse[r] * kLog2e : 0.0f;
        pf_D = ok ? Dg[r] : 0.0f;
    };
    prefetch(0);

    // dK (unscaled) and dV for the warp's keys. PAIR: a warp keeps one of them, in dka's registers: dV
    // for role 0, dK for role 1 (dva is then unused, and takes no registers).
    float dka[MT][HD / 8][4] = {};
    float dva[C::PAIR ? 1 : MT][HD / 8][4] = {};
    for (int it = 0; it < n_it; it++) {
        const int q0 = qb_of(it) * BM, st = it & 1;
        if (it + 1 < n_it) {
            load_tile<BM, HD, NT>(sQ + (st ^ 1) * BM * LD, q + qoff_of(it + 1), qstride, qb_of(it + 1) * BM, T, tid);
            load_tile<BM, HD, NT>(sdO + (st ^ 1) * BM * LD, dout + qoff_of(it + 1), qstride, qb_of(it + 1) * BM, T, tid);
        }
        cp_async_commit();
        if (tid < BM) sQseg[tid] = pf_seg, sLse2[tid] = pf_lse2, sD[tid] = pf_D;
        const bool match = tid < BM && q0 + tid < T && pf_seg == seg_first;
        if (it + 1 < n_it) prefetch(it + 1);
        cp_async_wait<1>();
        const int n_match = __syncthreads_count(match);
        // No query of the block is in the keys' segment: nothing to add to dK, dV, and dS = 0.
        const bool any = !(k_uniform && n_match == 0);
        if (!any) {
            __syncthreads();
            continue;
        }
        // No mask: keys and queries all real and in one segment, every query >= every key, and every
        // query within the window of every key of the warp (the last query within the first key's).
        const bool no_mask = k_full && n_match == BM && q0 >= k0 + BN - 1 && q0 + BM - 1 < k0 + wrow + win;
        const bf16* tQ = sQ + st * BM * LD;
        const bf16* tdO = sdO + st * BM * LD;
        // A warp whose keys r0 .. r0 + 16·MT - 1 (of the block) all come after the block's last query,
        // or whose last key's window ends before its first query: Pᵀ = 0 throughout, dV, dK += 0, dS =
        // 0. It skips the math (bit-identical) and only meets the barriers; a pair skips together. Only
        // at HD 128 and 256: at HD 64 the test itself made the backward 0.6-1.5% slower on an H100
        // (bench/RESULTS.md, the warp skip; measured without windows).
        auto live_rows = [&](int r0) {
            return any && (HD == 64 || (q0 + BM - 1 >= k0 + r0 && q0 < k0 + r0 + 16 * MT - 1 + win));
        };
        const bool live = live_rows(wrow);

        float s[MT][BM / 8][4] = {};  // rows = keys, columns = queries
        // Pᵀ into s. Element e of tile n of row tile m: key ki[m][e>>1], query column 8n + 2*cq + (e&1).
        // Two versions of the loop, so that the blocks with no mask (all but the diagonal ones, in
        // a plain causal batch) carry no mask arithmetic; the mask itself is branch-free.
        auto probs = [&](auto masked_tag) {
            constexpr bool kMasked = decltype(masked_tag)::value;
            #pragma unroll
            for (int n = 0; n < BM / 8; n++) {
                const int c = n * 8 + 2 * cq;
                const float2 l2 = *reinterpret_cast<const float2*>(sLse2 + c);
                const int2 qs = *reinterpret_cast<const int2*>(sQseg + c);
                #pragma unroll
                for (int m = 0; m < MT; m++)
                    #pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const float p = exp2_ftz(fmaf(s[m][n][e], scale_log2, -((e & 1) ? l2.y : l2.x)));
                        if (kMasked) {
                            const int qi = q0 + c + (e & 1), i = e >> 1;
                            const bool masked = (ki[m][i] > qi) | (qi >= T) |
                                                (((e & 1) ? qs.y : qs.x) != kseg[m][i]) | (ki[m][i] <= qi - win);
                            s[m][n][e] = masked ? 0.0f : p;
                        } else {
                            s[m][n][e] = p;
                        }
                    }
            }
        };
        // dSᵀ = Pᵀ ∘ (dPᵀ - D[query]) into p, from Pᵀ in p and dPᵀ in dp.
        auto dscores = [&](float (&p)[MT][BM / 8][4], const float (&dp)[MT][BM / 8][4]) {
            #pragma unroll
            for (int n = 0; n < BM / 8; n++) {
                const float2 d2 = *reinterpret_cast<const float2*>(sD + n * 8 + 2 * cq);
                #pragma unroll
                for (int m = 0; m < MT; m++)
                    #pragma unroll
                    for (int e = 0; e < 4; e++) p[m][n][e] *= dp[m][n][e] - ((e & 1) ? d2.y : d2.x);
            }
        };
        if constexpr (!C::PAIR) {
            float dp[MT][BM / 8][4] = {};  // Sᵀ = K Qᵀ into s, dPᵀ = V dOᵀ into dp
            if (live) {
                mma_scores_pair<MT, BM, HD, LD>(s, dp, sK + wrow * LD, sV + wrow * LD, tQ, tdO, lane);
                if (no_mask) probs(std::false_type{});
                else probs(std::true_type{});
                mma_acc_pb<MT, BM, HD, LD>(dva, s, tdO, lane);  // dV += Pᵀ dO (B = dO rows, transposed)
                dscores(s, dp);
                mma_acc_pb<MT, BM, HD, LD>(dka, s, tQ, lane);  // dK += dSᵀ Q
            }
        } else {
            if (live && role == 0) {  // Sᵀ = K Qᵀ, Pᵀ, handed to the partner
                mma_scores<MT, BM, HD, LD>(s, sK + wrow * LD, tQ, lane);
                if (no_mask) probs(std::false_type{});
                else probs(std::true_type{});
                #pragma unroll
                for (int m = 0; m < MT; m++)
                    #pragma unroll
                    for (int n = 0; n < BM / 8; n++)
                        pair_P[(m * (BM / 8) + n) * 32 + lane] = make_float4(s[m][n][0], s[m][n][1], s[m][n][2], s[m][n][3]);
            } else if (live) {  // dPᵀ = V dOᵀ
                mma_scores<MT, BM, HD, LD>(s, sV + wrow * LD, tdO, lane);
            }
            __syncthreads();  // Pᵀ is in shared memory
            if (live && role == 0) {
                mma_acc_pb<MT, BM, HD, LD>(dka, s, tdO, lane);  // dV += Pᵀ dO (in dka's registers)
            } else if (live) {
                float p[MT][BM / 8][4];
                #pragma unroll
                for (int m = 0; m < MT; m++)
                    #pragma unroll
                    for (int n = 0; n < BM / 8; n++) {
                        const float4 x = pair_P[(m * (BM / 8) + n) * 32 + lane];
                        p[m][n][0] = x.x, p[m][n][1] = x.y, p[m][n][2] = x.z, p[m][n][3] = x.w;
                    }
                dscores(p, s);
                mma_acc_pb<MT, BM, HD, LD>(dka, p, tQ, lane);  // dK += dSᵀ Q
            }
        }
        __syncthreads();  // the Q, dO buffer is free for the next step
    }
    cp_async_wait<0>();  // nothing is left in flight (the last group is empty), but be explicit
    // The warp's rows of sK and sV are read by no one else now: stage dK · scale and dV there and
    // store (PAIR: role 1 stages its dK in sK, role 0 its dV in sV).
    if constexpr (!C::PAIR) {
        #pragma unroll
        for (int m = 0; m < MT; m++) {
            acc_to_smem<HD>(sK, wrow + 16 * m, dka[m], scale, scale, lane);
            acc_to_smem<HD>(sV, wrow + 16 * m, dva[m], 1.0f, 1.0f, lane);
        }
        __syncwarp();
        #pragma unroll
        for (int m = 0; m < MT; m++) {
            store_rows16<HD>(dk + koff, kstride, k0 + wrow + 16 * m, T, sK + (wrow + 16 * m) * LD, lane);
            store_rows16<HD>(dv + koff, kstride, k0 + wrow + 16 * m, T, sV + (wrow + 16 * m) * LD, lane);
        }
    } else {
        bf16* stage = role ? sK : sV;
        const float mul = role ? scale : 1.0f;
        #pragma unroll
        for (int m = 0; m < MT; m++) acc_to_smem<HD>(stage, wrow + 16 * m, dka[m], mul, mul, lane);
        __syncwarp();
        #pragma unroll
        for (int m = 0; m < MT; m++)
            store_rows16<HD>((role ? dk : dv) + koff, kstride, k0 + wrow + 16 * m, T, stage + (wrow + 16 * m) * LD, lane);
    }
}

// ---------------------------------------------------------------------------------------------------
// FP32 fallbacks, any hd <= 256. dQ: one warp per query row (b, t, h), over its allowed keys (from
// t - win + 1 on).
__global__ void dq_fallback_kernel(bf16* dq, const bf16* dout, const float* lse, const float* D, const bf16* q,
                                   const bf16* k, const bf16* v, const int32_t* seg, int B, int T, int nh, int nkv,
                                   int hd, float scale, int win) {
    const int lane = threadIdx.x & 31;
    const size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;  // (b*T + t)*nh + h
    if (row >= (size_t)B * T * nh) return;
    const int h = (int)(row % nh), t = (int)(row / nh % T), b = (int)(row / nh / T), g = h / (nh / nkv);
    const int32_t* sg = seg + (size_t)b * T;
    float qv[kFbRegs], dov[kFbRegs], acc[kFbRegs] = {};
    load_row(qv, q + row * hd, hd, lane);
    load_row(dov, dout + row * hd, hd, lane);
    const float L = lse[row], Dr = D[row];
    for (int s = t - win + 1 > 0 ? t - win + 1 : 0; s <= t; s++) {
        if (sg[s] != sg[t]) continue;
        const size_t kv = (((size_t)b * T + s) * nkv + g) * hd;
        const float p = expf(dot_row(qv, k + kv, hd, lane) * scale - L);
        const float ds = p * (dot_row(dov, v + kv, hd, lane) - Dr);
        #pragma unroll
        for (int i = 0; i < kFbRegs; i++) {
            const int d = lane + 32 * i;
            if (d < hd) acc[i] += ds * __bfloat162float(k[kv + d]);
        }
    }
    store_row(dq + row * hd, acc, scale, hd, lane);
}

// dK, dV: one warp per key row (b, s, g), over the allowed queries of every head of the group (up to
// s + win - 1).
__global__ void dkdv_fallback_kernel(bf16* dk, bf16* dv, const bf16* dout, const float* lse, const float* D,
                                     const bf16* q, const bf16* k, const bf16* v, const int32_t* seg, int B, int T,
                                     int nh, int nkv, int hd, float scale, int win) {
    const int lane = threadIdx.x & 31;
    const size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;  // (b*T + s)*nkv + g
    if (row >= (size_t)B * T * nkv) return;
    const int g = (int)(row % nkv), s = (int)(row / nkv % T), b = (int)(row / nkv / T), group = nh / nkv;
    const int32_t* sg = seg + (size_t)b * T;
    float kv_k[kFbRegs], kv_v[kFbRegs], dka[kFbRegs] = {}, dva[kFbRegs] = {};
    load_row(kv_k, k + row * hd, hd, lane);
    load_row(kv_v, v + row * hd, hd, lane);
    for (int h = g * group; h < (g + 1) * group; h++)
        for (int t = s; t < T && t < s + win; t++) {
            if (sg[t] != sg[s]) continue;
            const size_t qr = ((size_t)b * T + t) * nh + h;
            const float p = expf(dot_row(kv_k, q + qr * hd, hd, lane) * scale - lse[qr]);
            const float ds = p * (dot_row(kv_v, dout + qr * hd, hd, lane) - D[qr]);
            #pragma unroll
            for (int i = 0; i < kFbRegs; i++) {
                const int d = lane + 32 * i;
                if (d < hd) {
                    dka[i] += ds * __bfloat162float(q[qr * hd + d]);
                    dva[i] += p * __bfloat162float(dout[qr * hd + d]);
                }
            }
        }
    store_row(dk + row * hd, dka, scale, hd, lane);
    store_row(dv + row * hd, dva, 1.0f, hd, lane);
}

template <int HD, bool narrow>
void launch_flash_bwd(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const float* lse, const float* D, const bf16* q,
                      const bf16* k, const bf16* v, const int32_t* seg, int B, int T, int nh, int nkv, float scale,
                      int win) {
    using Q = DqCfg<HD, narrow>;
    using C = BwdCfg<HD, narrow>;
    static const bool smem_ok = [] {  // once per instantiation: allow more than 48 KB of shared memory
        CUDA_CHECK(cudaFuncSetAttribute(flash_dq_kernel<HD, narrow>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)Q::smem));
        CUDA_CHECK(cudaFuncSetAttribute(flash_bwd_kernel<HD, narrow>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)C::smem));
        return true;
    }();
    (void)smem_ok;
    const unsigned nqb = ceil_div(T, Q::BM), nkb = ceil_div(T, C::BN);
    if (std::max(nqb, nkb) > 65535)
        fail("attention_backward: T = %d is too long for one grid (at most %d)", T, 65535 * std::min(Q::BM, C::BN));
    flash_dq_kernel<HD, narrow><<<dim3(B * nh, nqb), Q::NT, Q::smem>>>(dq, dout, lse, D, q, k, v, seg, T, nh, nkv,
                                                                       scale, scale * kLog2e, win);
    CUDA_LAUNCH_CHECK();
    flash_bwd_kernel<HD, narrow><<<dim3(B * nkv, nkb), C::NT, C::smem>>>(
        dk, dv, dout, lse, D, q, k, v, seg, T, nh, nkv, scale, scale * kLog2e, win);
    CUDA_LAUNCH_CHECK();
}

// The wide tilings where the GPU allows the shared memory of both kernels, else the narrow ones (hd
// 128 and 256 on sm_86/89).
template <int HD, bool narrow>
constexpr size_t bwd_smem() {
    return std::max(DqCfg<HD, narrow>::smem, BwdCfg<HD, narrow>::smem);
}
template <int HD>
void launch_flash_bwd_fitting(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const float* lse, const float* D,
                              const bf16* q, const bf16* k, const bf16* v, const int32_t* seg, int B, int T, int nh,
                              int nkv, float scale, int win) {
    // A narrow twin exists where a wide tiling may not fit; it must fit every GPU.
    if constexpr (bwd_smem<HD, false>() > kMinSmemOptin) {
        static_assert(bwd_smem<HD, true>() <= kMinSmemOptin, "the narrow tiling must fit every GPU");
        if (!wide_tiles_fit(bwd_smem<HD, false>()))
            return launch_flash_bwd<HD, true>(dq, dk, dv, dout, lse, D, q, k, v, seg, B, T, nh, nkv, scale, win);
    }
    launch_flash_bwd<HD, false>(dq, dk, dv, dout, lse, D, q, k, v, seg, B, T, nh, nkv, scale, win);
}

}  // namespace

namespace cuda {

void attention_backward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* out, const float* lse,
                        const bf16* q, const bf16* k, const bf16* v, const int32_t* seg, int B, int T, int nh, int nkv,
                        int hd, float scale, int window) {
    if (B <= 0 || T <= 0 || nh <= 0) return;
    if (nkv <= 0 || nh % nkv != 0) fail("attention_backward: %d query heads do not share %d kv heads evenly", nh, nkv);
    if (hd > kMaxFallbackHd) fail("attention_backward: head dim %d is not supported (at most %d)", hd, kMaxFallbackHd);
    const int win = kernel_window(window, T);
    const size_t rows = (size_t)B * T * nh;
    float* D = (float*)cuda_scratch(Scratch::attention, attention_backward_scratch_bytes(B, T, nh));
    launch_bwd_D(D, dout, out, rows, hd);
    if (tensor_core_ok(hd, {dq, dk, dv, dout, q, k, v})) {
        if (hd == 64) launch_flash_bwd_fitting<64>(dq, dk, dv, dout, lse, D, q, k, v, seg, B, T, nh, nkv, scale, win);
        else if (hd == 128) launch_flash_bwd_fitting<128>(dq, dk, dv, dout, lse, D, q, k, v, seg, B, T, nh, nkv, scale, win);
        else launch_flash_bwd_fitting<256>(dq, dk, dv, dout, lse, D, q, k, v, seg, B, T, nh, nkv, scale, win);
        return;
    }
    dq_fallback_kernel<<<ceil_div(rows, 4), 128, 0>>>(dq, dout, lse, D, q, k, v, seg, B, T, nh, nkv, hd, scale, win);
    CUDA_LAUNCH_CHECK();
    const size_t krows = (size_t)B * T * nkv;
    dkdv_fallback_kernel<<<ceil_div(krows, 4), 128, 0>>>(dk, dv, dout, lse, D, q, k, v, seg, B, T, nh, nkv, hd, scale,
                                                         win);
    CUDA_LAUNCH_CHECK();
}

}  // namespace cuda

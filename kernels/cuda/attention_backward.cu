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
//                          group's heads) are summed in its registers, in a fixed order. With
//                          ATTENTION_BWD=fused it also computes dQ (and 2. does not run): the CTAs of
//                          a query block add their parts to an FP32 accumulator in the order of their
//                          key blocks, each waiting for its predecessor's flag; the last writes dq.
// With a window both loops are O(window) long, so the backward costs O(T·window) like the forward.
// Split: 7 tile products (S, dP, dQ | S, dP, dV, dK); fused: 5, as in FlashAttention-2, which sums dQ
// with atomics instead.
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
// dK, dV, and with FUSED also dQ. A CTA owns BN = 128 keys of one kv head (64 in the narrow tiling),
// their K and V rows resident in shared memory, and walks the query blocks of BM = 32 queries that can
// see them, from the last down to the diagonal, each for every query head of its GQA group (heads
// inner), double-buffering Q, dO (cp.async) and their lse, D, segment ids (through registers). Per warp
// the tile is transposed — keys are the rows — so that dK, dV stay in registers:
//   Sᵀ  = K Qᵀ, dPᵀ = V dOᵀ         (A = K, V rows; B = Q, dO rows, non-transposed)
//   Pᵀ  = exp2(Sᵀ·scale·log2e - lse[query]·log2e), 0 where masked
//   dV += Pᵀ dO                      (A = Pᵀ from registers; B = dO rows, transposed)
//   dSᵀ = Pᵀ ∘ (dPᵀ - D[query])
//   dK += dSᵀ Q                      (A = dSᵀ from registers; B = Q rows, transposed)
//   FUSED: dQ_i += dS K              (A = dS from shared memory; B = K rows, transposed): below
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
// FUSED dQ (ATTENTION_BWD=fused; otherwise flash_dq_kernel, attention_backward_dq.cuh, recomputes S
// and dP for it: 7 tile products in all instead of 5). Query block i sums dS_ij K_j over the key blocks j that see it, each
// owned by another CTA. The warp (or pair) that computed dSᵀ writes it as BF16 to shared memory ([BN
// keys][BM + 8]: the same BF16 values its dK product used); then each warp takes HD / NW columns of
// dQ_i and multiplies all of dS (read with the transposed ldmatrix: the A fragments of dS from a tile
// of dSᵀ) by its columns of K: 32 more mma per warp at HD 64 and 128, a fifth product. The parts are
// summed in an FP32 accumulator in global memory (dq_acc, [b][h][t][HD]). Floating-point atomics
// (FlashAttention-2's way) would make the order of that sum, and with it dq's bits, change from run
// to run; instead the CTAs of a query block add in the order of their key blocks, j = j_first(i), ...,
// j_last(i) (the diagonal), the first writing the accumulator and the last adding its part, scaling
// and writing dq in BF16. Each waits for a flag per (query block, head) that CTA j - 1 releases (the
// semaphore of CUTLASS's serial split-K: thread 0 polls with an acquire load and a barrier passes it
// on; a barrier, then thread 0's release store publishes every thread's writes). The round trips are
// kept off the critical path: thread 0 fetches the flag before this step's first products and looks
// at it after them (polling again only if it was not yet set), the loads of the
// accumulator are issued before its last two and used after them, and the release of step it - 1's
// stores comes in step it, before that wait, when they have long completed. So
// CTA j runs about a step behind CTA j - 1 (both walk the query blocks in the same order, j - 1 having
// BN/BM more at the end). CTAs take j from a ticket (an atomic counter): j = ticket / (B·nkv), so a CTA
// only ever waits for one that started before it — no deadlock, whatever order the GPU dispatches CTAs
// in — and the longest CTAs (j = 0 sees the most queries) start first.
//
// Shared memory: K, V [BN][HD+8], Q, dO [2][BM][HD+8], when paired Pᵀ [pairs][16·MT][BM] FP32, FUSED
// dSᵀ [BN][BM+8]: 118 (+10) KB at HD 128, 55 (+10) KB at HD 64, 140 (+5) KB at HD 256. The narrow
// tilings (99 KB GPUs) have 4 warps: BN = 64 at HD 128 (76 + 5 KB); BN = 32 and query blocks of BM =
// 16 at HD 256 (68 + 1.5 KB).
template <int HD, bool narrow, bool FUSED>
struct BwdCfg {
    static_assert(HD == 64 || HD == 128 || HD == 256, "tilings exist for head dims 64, 128 and 256");
    static constexpr bool PAIR = HD >= 128;
    static constexpr int MT = HD == 256 ? 1 : 2, NW = narrow || !PAIR ? 4 : 8, NT = NW * 32,
                         BN = 16 * MT * (PAIR ? NW / 2 : NW), BM = HD == 256 && narrow ? 16 : 32, LD = HD + 8,
                         DW = HD / NW,  // dQ columns per warp
                         LDS = BM + 8;  // row stride of the dSᵀ tile
    static constexpr int PX = PAIR ? NW / 2 * MT * BM * 16 : 0;  // floats of Pᵀ for all pairs (16·MT keys x BM each)
    static constexpr size_t smem = (size_t)(2 * BN + 4 * BM) * LD * sizeof(bf16) + 3 * BM * sizeof(float) +
                                   PX * sizeof(float) + (FUSED ? (size_t)BN * LDS * sizeof(bf16) : 0);
    static_assert(NT >= BN && NT >= BM, "one thread per key and per query of a block (segment ids, lse, D)");
    static_assert(DW % 16 == 0, "a warp's dQ columns are whole 16-column ldmatrix tiles of K");
    static_assert(BN % BM == 0, "a key block starts a query block (qb_first = k0 / BM; dQ's j_first, j_last)");
};

// acc += dS·K for a warp's DW columns of dQ (all BM query rows): dS is read as A fragments from the
// dSᵀ tile [BN][LDS] with the transposed ldmatrix (matrix i: keys 8·(i/2).., queries 8·(i%2)..;
// transposed, lane l gets dS[q = l/4][k = 2(l%4), 2(l%4)+1], a's layout), K as in P·V (rows = keys,
// transposed), kc pointing at the warp's first column. Key steps of 16 whose dS rows were not written
// (their warp skipped a tile that it cannot see) are skipped: live_keys(ks) says which.
template <int BM, int BN, int DW, int LDS, int LD, class Live>
__device__ __forceinline__ void mma_dq(float (&acc)[BM / 16][DW / 8][4], const bf16* dst, const bf16* kc,
                                       Live&& live_keys, int lane) {
    #pragma unroll
    for (int ks = 0; ks < BN / 16; ks++) {
        if (!live_keys(ks)) continue;
        uint32_t a[BM / 16][4];
        #pragma unroll
        for (int mq = 0; mq < BM / 16; mq++)
            ldmatrix_x4_trans(a[mq], dst + (ks * 16 + (lane & 7) + ((lane >> 4) & 1) * 8) * LDS + mq * 16 +
                                         ((lane >> 3) & 1) * 8);
        #pragma unroll
        for (int dp = 0; dp < DW / 16; dp++) {
            uint32_t bf[4];
            ldmatrix_x4_trans(bf, kc + (ks * 16 + (lane & 15)) * LD + dp * 16 + (lane >> 4) * 8);
            #pragma unroll
            for (int mq = 0; mq < BM / 16; mq++) {
                mma_bf16(acc[mq][2 * dp], a[mq], bf[0], bf[1]);
                mma_bf16(acc[mq][2 * dp + 1], a[mq], bf[2], bf[3]);
            }
        }
    }
}

template <int HD, bool narrow, bool FUSED>
__global__ void __launch_bounds__(BwdCfg<HD, narrow, FUSED>::NT)
    flash_bwd_kernel(bf16* __restrict__ dq, bf16* __restrict__ dk, bf16* __restrict__ dv, float* __restrict__ dq_acc,
                     int* flags, int* ticket, const bf16* __restrict__ dout,
                     const float* __restrict__ lse, const float* __restrict__ Dg, const bf16* __restrict__ q,
                     const bf16* __restrict__ k, const bf16* __restrict__ v, const int32_t* __restrict__ seg, int B,
                     int T, int nh, int nkv, float scale, float scale_log2, int win) {
    using C = BwdCfg<HD, narrow, FUSED>;
    constexpr int MT = C::MT, BM = C::BM, BN = C::BN, LD = C::LD, NT = C::NT, DW = C::DW, LDS = C::LDS;
    extern __shared__ __align__(16) unsigned char attn_smem[];
    bf16* sK = reinterpret_cast<bf16*>(attn_smem);  // [BN][LD]
    bf16* sV = sK + BN * LD;                         // [BN][LD]
    bf16* sQ = sV + BN * LD;                         // [2][BM][LD]
    bf16* sdO = sQ + 2 * BM * LD;                    // [2][BM][LD]
    float* sLse2 = reinterpret_cast<float*>(sdO + 2 * BM * LD);  // [BM] lse·log2e of the current queries
    float* sD = sLse2 + BM;                                      // [BM]
    int* sQseg = reinterpret_cast<int*>(sD + BM);                // [BM]
    float4* sP = reinterpret_cast<float4*>(sQseg + BM);         // PAIR: [pair][MT][BM/8][32 lanes] Pᵀ tiles
    bf16* sdS = reinterpret_cast<bf16*>(sP + C::PX / 4);         // FUSED: [BN][LDS] dSᵀ (rows = keys)
    __shared__ int s_ticket;

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gq = lane >> 2, cq = lane & 3;
    // PAIR: role 0 (even warp) computes Sᵀ, Pᵀ, dV; role 1 (odd warp) dPᵀ, dSᵀ, dK, for the same keys.
    const int role = C::PAIR ? warp & 1 : 0, owner = C::PAIR ? warp >> 1 : warp;
    float4* pair_P = sP + owner * MT * (BM / 8) * 32;
    // The key block jb and (b, g): grid x = b * nkv + g, y = jb (block 0, which sees the most queries,
    // first); FUSED: from the ticket, in the same order (see the top of the kernel).
    int jb = blockIdx.y, bg = blockIdx.x;
    if constexpr (FUSED) {
        if (tid == 0) s_ticket = atomicAdd(ticket, 1);
        __syncthreads();
        jb = s_ticket / (B * nkv), bg = s_ticket % (B * nkv);
    }
    const int group = nh / nkv, b = bg / nkv, g = bg % nkv;
    const int k0 = jb * BN;
    const int32_t* sg = seg + (size_t)b * T;
    const size_t qstride = (size_t)nh * HD, kstride = (size_t)nkv * HD;
    const size_t koff = ((size_t)b * T * nkv + g) * HD;
    // The queries that can see a key of the block: from its first key (the diagonal) to before
    // q_end, where the window of its last key k0 + BN - 1 ends (query t sees key s only if
    // t < s + win), or T. Step it: query head g*group + it / nqb, query block qb_first + it % nqb; FUSED
    // (the CTAs of a query block in step, see the top): query block qb_last - it / group, query head
    // g*group + it % group.
    const int q_end = k0 + BN - 1 + win < T ? k0 + BN - 1 + win : T;
    const int qb_first = k0 / BM, qb_last = (q_end + BM - 1) / BM - 1, nqb = qb_last - qb_first + 1, n_it = group * nqb;
    auto head_of = [&](int it) { return g * group + (FUSED ? it % group : it / nqb); };
    auto qb_of = [&](int it) { return FUSED ? qb_last - it / group : qb_first + it % nqb; };
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
    int* release_flag = nullptr;  // FUSED: the flag of the dQ tile stored in the previous step, and its
    int release_value = 0;        // next value, released in this step (see the top of the kernel)
    for (int it = 0; it < n_it; it++) {
        const int qb = qb_of(it), q0 = qb * BM, h = head_of(it), st = it & 1;
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
        if (!FUSED && !any) {  // (FUSED: the block still takes its turn in dQ's order)
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
        // 0. It skips the math (bit-identical) and only meets the barriers; a pair skips together, and
        // dQ skips their keys. At HD 128 and 256: at HD 64 the test made the backward 0.6-1.5% slower
        // on an H100 (the warp skip's RESULTS; measured without windows).
        auto live_rows = [&](int r0) {
            return any && (HD == 64 || (q0 + BM - 1 >= k0 + r0 && q0 < k0 + r0 + 16 * MT - 1 + win));
        };
        const bool live = live_rows(wrow);

        // FUSED: where dQ's part of this step goes. The key blocks that see query block qb: j_last holds
        // its first query's diagonal, j_first is the first whose window reaches its first query (k0 +
        // BN - 1 + win > q0; 0 without a window); CTA jb adds in turn jb - j_first.
        const int xf = q0 - BN + 2 - win, j_first = xf > 0 ? (xf + BN - 1) / BN : 0, j_last = q0 / BN;
        const bool first = jb == j_first, last = jb == j_last;
        int* flag = FUSED ? flags + ((size_t)b * nh + h) * ((T + BM - 1) / BM) + qb : nullptr;
        // Thread 0 fetches the flag now, before the first products; dq_turn looks at it after them.
        const int flag_seen = FUSED && tid == 0 && !first ? flag_acquire(flag) : 0;
        float* acc_rows = FUSED ? dq_acc + ((size_t)b * nh + h) * T * HD : nullptr;  // [T][HD] FP32 of head h
        const int c0 = warp * DW;                                  // this warp's columns of dQ
        float2 old[BM / 16][2][DW / 8];                            // the accumulator's sum so far
        // The release of the previous step's tile (its stores came before the previous step's last
        // barrier, and have had this step's first products to complete), the wait for CTA jb - 1's
        // part (none when the early fetch already saw it), and the loads of this tile's sum so far.
        // Releasing first keeps the successor of the previous tile from waiting on this CTA's
        // predecessor.
        auto dq_turn = [&] {
            if constexpr (FUSED) {
                if (tid == 0 && release_flag) flag_release(release_flag, release_value);
                release_flag = nullptr;
                if (tid == 0 && !first && flag_seen != jb - j_first) flag_wait(flag, jb - j_first);
                __syncthreads();  // everyone is ordered after the acquire
                #pragma unroll
                for (int mq = 0; mq < BM / 16; mq++)
                    #pragma unroll
                    for (int half = 0; half < 2; half++) {
                        const int t = q0 + 16 * mq + gq + 8 * half;
                        #pragma unroll
                        for (int n = 0; n < DW / 8; n++)
                            old[mq][half][n] = !first && t < T ? __ldcg(reinterpret_cast<const float2*>(
                                                                     acc_rows + (size_t)t * HD + c0 + 8 * n + 2 * cq))
                                                               : make_float2(0.0f, 0.0f);
                    }
            }
        };

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
        // dK += dSᵀ Q, and FUSED: dSᵀ (rounded to BF16, as that product takes it) to sdS for dQ.
        auto dk_and_stage_ds = [&](const float (&ds)[MT][BM / 8][4]) {
            mma_acc_pb<MT, BM, HD, LD>(dka, ds, tQ, lane);
            if constexpr (FUSED) {
                #pragma unroll
                for (int m = 0; m < MT; m++) acc_to_smem<BM>(sdS, wrow + 16 * m, ds[m], 1.0f, 1.0f, lane);
            }
        };
        if constexpr (!C::PAIR) {
            float dp[MT][BM / 8][4] = {};  // Sᵀ = K Qᵀ into s, dPᵀ = V dOᵀ into dp
            if (live) {
                mma_scores_pair<MT, BM, HD, LD>(s, dp, sK + wrow * LD, sV + wrow * LD, tQ, tdO, lane);
                if (no_mask) probs(std::false_type{});
                else probs(std::true_type{});
            }
            dq_turn();
            if (live) {
                mma_acc_pb<MT, BM, HD, LD>(dva, s, tdO, lane);  // dV += Pᵀ dO (B = dO rows, transposed)
                dscores(s, dp);
                dk_and_stage_ds(s);
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
            if constexpr (FUSED) dq_turn();  // its barrier also hands over Pᵀ
            else __syncthreads();            // Pᵀ is in shared memory
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
                dk_and_stage_ds(p);
            }
        }
        if constexpr (FUSED) {
            __syncthreads();  // dSᵀ is in shared memory
            // This warp's part of dQ, added to the sum so far: the accumulator, or dq if this CTA is
            // the last to add (then scaled and rounded to BF16).
            float dqa[BM / 16][DW / 8][4] = {};
            mma_dq<BM, BN, DW, LDS, LD>(dqa, sdS, sK + c0, [&](int ks) { return live_rows(ks / MT * 16 * MT); }, lane);
            #pragma unroll
            for (int mq = 0; mq < BM / 16; mq++)
                #pragma unroll
                for (int half = 0; half < 2; half++) {
                    const int t = q0 + 16 * mq + gq + 8 * half;
                    if (t >= T) continue;
                    #pragma unroll
                    for (int n = 0; n < DW / 8; n++) {
                        const int c = c0 + 8 * n + 2 * cq;
                        const float x0 = old[mq][half][n].x + dqa[mq][n][2 * half],
                                    x1 = old[mq][half][n].y + dqa[mq][n][2 * half + 1];
                        if (last)  // (b·T + t in an int: a batch has fewer than 2^31 tokens)
                            *reinterpret_cast<uint32_t*>(dq + ((size_t)(b * T + t) * nh + h) * HD + c) =
                                pack_bf16(x0 * scale, x1 * scale);
                        else
                            __stcg(reinterpret_cast<float2*>(acc_rows + (size_t)t * HD + c), make_float2(x0, x1));
                    }
                }
            if (!last) release_flag = flag, release_value = jb - j_first + 1;
        }
        __syncthreads();  // the Q, dO buffer (and sdS) are free for the next step
    }
    cp_async_wait<0>();  // nothing is left in flight (the last group is empty), but be explicit
    if (FUSED && tid == 0 && release_flag) flag_release(release_flag, release_value);  // after the loop's last barrier
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

// The scratch of the fused kernel (attention_backward_scratch_bytes): dQ's FP32 accumulator, then
// (after D) the ticket and the flags, zeroed before every launch: they count from 0 in every call.
struct BwdSync {
    float* dq_acc;
    int* ticket;  // ticket[0]; the flags follow
};

// flash_bwd_kernel on a grid of (B·nkv, key blocks): FUSED takes the blocks' order from its ticket
// and needs a 1D grid for it; sync is null without FUSED.
template <int HD, bool narrow, bool FUSED>
void launch_bwd_kernel(dim3 grid, bf16* dq, bf16* dk, bf16* dv, BwdSync sync, const bf16* dout, const float* lse,
                       const float* D, const bf16* q, const bf16* k, const bf16* v, const int32_t* seg, int B, int T,
                       int nh, int nkv, float scale, int win) {
    using C = BwdCfg<HD, narrow, FUSED>;
    static const bool smem_ok = [] {  // once per instantiation: allow more than 48 KB of shared memory
        CUDA_CHECK(cudaFuncSetAttribute(flash_bwd_kernel<HD, narrow, FUSED>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)C::smem));
        return true;
    }();
    (void)smem_ok;
    if constexpr (FUSED) {
        const size_t ctas = (size_t)grid.x * grid.y;
        if (ctas > 0x7fffffff) fail("attention_backward: %zu blocks are too many for one grid", ctas);
        grid = dim3((unsigned)ctas);
        static_assert(C::BM == 16 || C::BM == 32, "attention_backward_scratch_bytes: a flag per 16 queries");
        const size_t nflags = (size_t)B * nh * ceil_div(T, C::BM);
        CUDA_CHECK(cudaMemsetAsync(sync.ticket, 0, (1 + nflags) * sizeof(int)));
    }
    int* flags = FUSED ? sync.ticket + 1 : nullptr;
    flash_bwd_kernel<HD, narrow, FUSED><<<grid, C::NT, C::smem>>>(dq, dk, dv, sync.dq_acc, flags, sync.ticket, dout, lse,
                                                                 D, q, k, v, seg, B, T, nh, nkv, scale,
                                                                 scale * kLog2e, win);
    CUDA_LAUNCH_CHECK();
}

template <int HD, bool narrow>
void launch_flash_bwd(bf16* dq, bf16* dk, bf16* dv, BwdSync sync, const bf16* dout, const float* lse, const float* D,
                      const bf16* q, const bf16* k, const bf16* v, const int32_t* seg, int B, int T, int nh, int nkv,
                      float scale, int win) {
    const dim3 grid(B * nkv, ceil_div(T, BwdCfg<HD, narrow, false>::BN));
    if (attention_bwd_fused())
        return launch_bwd_kernel<HD, narrow, true>(grid, dq, dk, dv, sync, dout, lse, D, q, k, v, seg, B, T, nh, nkv,
                                                   scale, win);
    using Q = DqCfg<HD, narrow>;
    static const bool smem_ok = [] {
        CUDA_CHECK(cudaFuncSetAttribute(flash_dq_kernel<HD, narrow>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)Q::smem));
        return true;
    }();
    (void)smem_ok;
    const unsigned nqb = ceil_div(T, Q::BM);
    if (nqb > 65535) fail("attention_backward: T = %d is too long for one grid (at most %d)", T, 65535 * Q::BM);
    flash_dq_kernel<HD, narrow><<<dim3(B * nh, nqb), Q::NT, Q::smem>>>(dq, dout, lse, D, q, k, v, seg, T, nh, nkv,
                                                                       scale, scale * kLog2e, win);
    CUDA_LAUNCH_CHECK();
    launch_bwd_kernel<HD, narrow, false>(grid, dq, dk, dv, BwdSync{}, dout, lse, D, q, k, v, seg, B, T, nh, nkv, scale,
                                         win);
}

// The wide tilings where the GPU allows the shared memory of the kernels that run (split: dQ and
// dK/dV; fused: the one kernel), else the narrow ones (hd 128 and 256 on sm_86/89).
template <int HD, bool narrow>
constexpr size_t bwd_smem(bool fused) {
    return fused ? BwdCfg<HD, narrow, true>::smem : std::max(DqCfg<HD, narrow>::smem, BwdCfg<HD, narrow, false>::smem);
}
template <int HD>
void launch_flash_bwd_fitting(bf16* dq, bf16* dk, bf16* dv, BwdSync sync, const bf16* dout, const float* lse,
                              const float* D, const bf16* q, const bf16* k, const bf16* v, const int32_t* seg, int B,
                              int T, int nh, int nkv, float scale, int win) {
    const bool fused = attention_bwd_fused();
    // A narrow twin exists where a wide tiling may not fit; it must fit every GPU.
    if constexpr (std::max(bwd_smem<HD, false>(false), bwd_smem<HD, false>(true)) > kMinSmemOptin) {
        static_assert(std::max(bwd_smem<HD, true>(false), bwd_smem<HD, true>(true)) <= kMinSmemOptin,
                      "the narrow tiling must fit every GPU");
        if (!wide_tiles_fit(bwd_smem<HD, false>(fused)))
            return launch_flash_bwd<HD, true>(dq, dk, dv, sync, dout, lse, D, q, k, v, seg, B, T, nh, nkv, scale, win);
    }
    launch_flash_bwd<HD, false>(dq, dk, dv, sync, dout, lse, D, q, k, v, seg, B, T, nh, nkv, scale, win);
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
    // [dQ accumulator, fused (tensor-core head dims)][D][ticket, flags]: attention_backward_scratch_bytes.
    const bool fused = attention_bwd_fused();
    char* scratch = (char*)cuda_scratch(Scratch::attention, attention_backward_scratch_bytes(B, T, nh, hd, fused));
    float* D = (float*)(scratch + (attention_bwd_has_dq_sum(hd, fused) ? rows * hd * sizeof(float) : 0));
    const BwdSync sync{(float*)scratch, (int*)(D + rows)};
    launch_bwd_D(D, dout, out, rows, hd);
    if (tensor_core_ok(hd, {dq, dk, dv, dout, q, k, v})) {
        if (hd == 64) launch_flash_bwd_fitting<64>(dq, dk, dv, sync, dout, lse, D, q, k, v, seg, B, T, nh, nkv, scale, win);
        else if (hd == 128) launch_flash_bwd_fitting<128>(dq, dk, dv, sync, dout, lse, D, q, k, v, seg, B, T, nh, nkv, scale, win);
        else launch_flash_bwd_fitting<256>(dq, dk, dv, sync, dout, lse, D, q, k, v, seg, B, T, nh, nkv, scale, win);
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

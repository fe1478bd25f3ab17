// Causal grouped-query attention, flash-attention style on the CPU: queries are taken in blocks of
// QB rows; a block's scores against the keys it may see are computed, softmaxed and applied, and
// only each query's log-sum-exp is kept. Memory is O(QB·T) per thread, never O(T²).
//
// Forward, per query t of head h (kv head g = h / (nh/nkv)):
//   s_j = q_t·k_j · scale for allowed j,  lse_t = log Σ_j exp(s_j),  o_t = Σ_j exp(s_j − lse_t) v_j
// Backward (p_j recomputed from lse):
//   D_t = dO_t·O_t,  dp_j = dO_t·v_j,  ds_j = p_j (dp_j − D_t) · scale
//   dq_t = Σ_j ds_j k_j,  dk_j += Σ_t ds_j q_t,  dv_j += Σ_t p_j dO_t
// Key j is allowed for query t when j <= t and seg[j] == seg[t]: causal, and never across packed
// examples or into padding (padding has seg −1 and only sees other padding); with a sliding window
// (window > 0) also j > t − window.
//
// A block of queries t0.. sees keys up to its last query; with a window, none below
// t0 − window + 1, the first key of its first query's window; and none before the first key of its
// queries' segments (packed examples, or the prompts of a generate prefill). Its products start at
// key kb, the later of those two first keys rounded down to a multiple of KA = 64, and skip the
// keys before: a long row costs O(T·(window + QB)) instead of O(T²), and a row packed with short
// examples O(T·(example + QB)). The skipped keys are the ones masking would have given p = 0, and
// every sum keeps its order: the GEMM tile's sums over keys run in key order (a skipped
// key would have added an exact 0), and the row max and sum of the softmax, whose vectorised
// reductions assign key j to a lane by its column, see each key in the same column modulo KA (a
// whole number of vectors) as with kb = 0. So a window gives the results that masking the full
// causal range would, bit for bit (but for the sign of an exact zero, in contrived inputs).
//
// Every product above is a small matrix product over a block: S = Q·Kᵀ, O = P·V, dP = dO·Vᵀ,
// dQ = dS·K, dK += dSᵀ·Q, dV += Pᵀ·dO. They all run through the GEMM's register tile of 6 × NR
// (NR = TILE_N: 16 columns with AVX2, 32 with AVX-512; gemm_tile in gemm.h, which reads A through
// strides, so transposes cost nothing). Its B operand must be rows of NR readable floats, so K and V
// are first packed for the kv head: transposed, in panels of NR keys ([Tp/NR][hd][NR]: K for Q·Kᵀ, and
// V for dO·Vᵀ) and as rows padded to hdp ([T][hdp]: V for P·V, and K for dS·K); Q and dO blocks
// likewise as padded rows for dSᵀ·Q and Pᵀ·dO.
// Sums run in a fixed order whatever the thread count: results are bit-reproducible.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "kernels/cpu/exp.h"
#include "kernels/cpu/gemm.h"
#include "kernels/kernels.h"

namespace cpu {
namespace {

constexpr int MR = TILE_M, NR = TILE_N;
constexpr int QB = 64;  // queries per block: the rows of P and dS kept for the dK/dV products
constexpr int KA = 64;  // the first key of a block's products is a multiple of KA (see the top)

int round_up(int x, int m) { return (x + m - 1) / m * m; }

// The simd reduction lets the compiler vectorise (a float sum is otherwise kept in source order);
// the order is still fixed for a given build, so results stay deterministic.
inline float dot(const float* __restrict a, const float* __restrict b, int n) {
    float s = 0.0f;
    #pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

// C[m, n] (=|+=) A[m, kc] · B[kc, n], A strided as in gemm_tile(). B comes in panels of NR columns,
// panel p at b + p·b_panel, its rows ldb apart: a row-major B with rows of n rounded up to NR floats
// (b_panel = NR, ldb its row stride), or packed panels (ldb = NR, b_panel = kc·NR).
void block_product(int m, int n, int kc, const float* a, size_t as, size_t ak, const float* b, size_t ldb,
                   size_t b_panel, float* c, size_t ldc, bool accumulate) {
    for (int j0 = 0; j0 < n; j0 += NR)  // column panels outside: a thread reuses one B panel over all rows
        for (int i0 = 0; i0 < m; i0 += MR)
            gemm_tile(std::min(MR, m - i0), std::min(NR, n - j0), kc, a + i0 * as, as, ak, b + j0 / NR * b_panel, ldb,
                      1.0f, c + i0 * ldc + j0, ldc, accumulate);
}

// rows[T][hd] with row stride `stride` → panels[Tp/NR][hd][NR] (transposed: panel p holds keys
// p·NR.. as columns, each d a row of NR floats, so the tile reads it with unit stride; read as one
// [hd][Tp] matrix instead, the tile's rows would be Tp floats apart, and at T = 1024 every one of
// them falls in the same L1 set: 22% slower at T = 1024 on one core) or padded[T][hdp].
void pack_panels(float* panels, const float* rows, size_t stride, int T, int hd) {
    for (int t = 0; t < T; t++)
        for (int d = 0; d < hd; d++) panels[((size_t)(t / NR) * hd + d) * NR + t % NR] = rows[t * stride + d];
}
void pack_rows(float* padded, const float* rows, size_t stride, int T, int hd, int hdp) {
    for (int t = 0; t < T; t++) memcpy(padded + (size_t)t * hdp, rows + t * stride, hd * sizeof(float));
}

// For every position t of each batch row, the first position of the row with t's segment id (as
// ids need not come in runs, the first occurrence of the id anywhere before t): no key before it is
// allowed for t.
std::vector<int> segment_starts(const int32_t* seg, int B, int T) {
    std::vector<int> first((size_t)B * T);
    std::unordered_map<int32_t, int> seen;
    for (int b = 0; b < B; b++) {
        seen.clear();
        for (int t = 0; t < T; t++) first[(size_t)b * T + t] = seen.emplace(seg[(size_t)b * T + t], t).first->second;
    }
    return first;
}

// The first key of the products of the query block t0 .. t0+qn−1 (see the top), whose queries'
// segments start at seg_first[t0 ..].
int first_key(int t0, int qn, int window, const int* seg_first) {
    int lo = window > 0 ? t0 - window + 1 : 0;
    lo = std::max(lo, *std::min_element(seg_first + t0, seg_first + t0 + qn));
    return lo > 0 ? lo / KA * KA : 0;
}

// Scores of queries t0..t0+qn−1 against keys kb..t0+qn−1 → S[qn][Tp] (column c: key kb + c), then in
// place the masked probabilities (0 where the key is not allowed). The backward recomputes them from
// the row's log-sum-exp L_t, read from lse_in[i·lse_stride]: p = exp(s·scale − L_t). The forward
// finds L_t and stores it in lse_out: with the row max m and Σ = Σ_j exp(s_j·scale − m),
// p = exp(s·scale − m) / Σ and L_t = m + log Σ. One exponential per score either way (a masked score
// is −inf, whose exp is 0), in two passes over a row: mask and max, then exp and sum (and in the
// forward a third, the division).
void probabilities(float* S, const float* q, size_t q_stride, const float* kpanels, int Tp, const int32_t* sg, int t0,
                   int qn, int kb, int window, int hd, float scale, const float* lse_in, float* lse_out,
                   size_t lse_stride) {
    const int n = t0 + qn - kb;
    block_product(qn, n, hd, q, q_stride, 1, kpanels + (size_t)kb * hd, NR, (size_t)hd * NR, S, Tp, false);
    for (int i = 0; i < qn; i++) {
        const int t = t0 + i, last = t - kb;        // columns 0..last: keys kb..t
        const int lo = window > 0 ? t - window + 1 : 0;  // t's first key
        const int32_t* sk = sg + kb;
        float* p = S + (size_t)i * Tp;
        float mx = -INFINITY, sum = 0.0f;
        #pragma omp simd reduction(max : mx)
        for (int c = 0; c < n; c++) {
            p[c] = ((c <= last) & (kb + c >= lo) & (sk[c] == sg[t])) ? p[c] * scale : -INFINITY;
            mx = std::max(mx, p[c]);
        }
        const float shift = lse_out ? mx : lse_in[i * lse_stride];
        #pragma omp simd reduction(+ : sum)
        for (int c = 0; c < n; c++) sum += (p[c] = exp_fast(p[c] - shift));
        if (lse_out) {
            lse_out[i * lse_stride] = mx + std::log(sum);
            const float inv = 1.0f / sum;
            #pragma omp simd
            for (int c = 0; c < n; c++) p[c] *= inv;
        }
    }
}

}  // namespace

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const int32_t* seg,
                       int B, int T, int nh, int nkv, int hd, float scale, int window) {
    const int group = nh / nkv, Tp = round_up(T, NR), hdp = round_up(hd, NR);
    const size_t qs = (size_t)nh * hd, ks = (size_t)nkv * hd;  // row strides
    const std::vector<int> seg_first = segment_starts(seg, B, T);
    #pragma omp parallel
    {
        std::vector<float> kpanels((size_t)hd * Tp), vrows((size_t)T * hdp), S((size_t)QB * Tp);
        #pragma omp for schedule(dynamic, 1) collapse(2)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < nh; h++) {
                const size_t r0 = (size_t)b * T;  // first row of this batch row
                const int g = h / group;
                // Packed per query head, so B·nh tasks share the threads: with GQA each kv head is
                // packed group times, T·hd copies against T²·hd multiply-adds of attention.
                pack_panels(kpanels.data(), k + r0 * ks + g * hd, ks, T, hd);
                pack_rows(vrows.data(), v + r0 * ks + g * hd, ks, T, hd, hdp);
                for (int t0 = 0; t0 < T; t0 += QB) {
                    const int qn = std::min(QB, T - t0), kb = first_key(t0, qn, window, seg_first.data() + r0);
                    probabilities(S.data(), q + (r0 + t0) * qs + h * hd, qs, kpanels.data(), Tp, seg + r0, t0, qn, kb,
                                  window, hd, scale, nullptr, lse + (r0 + t0) * nh + h, nh);
                    block_product(qn, hd, t0 + qn - kb, S.data(), Tp, 1, vrows.data() + (size_t)kb * hdp, hdp, NR,
                                  out + (r0 + t0) * qs + h * hd, qs, false);
                }
            }
    }
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* lse,
                        const float* q, const float* k, const float* v, const int32_t* seg, int B, int T, int nh,
                        int nkv, int hd, float scale, int window) {
    const int group = nh / nkv, Tp = round_up(T, NR), hdp = round_up(hd, NR);
    const size_t qs = (size_t)nh * hd, ks = (size_t)nkv * hd;
    const std::vector<int> seg_first = segment_starts(seg, B, T);
    // One task per (row, kv head): all query heads that share a kv head add into the same dk/dv, so
    // they run in one thread, in a fixed order (no atomics, deterministic).
    #pragma omp parallel
    {
        std::vector<float> kpanels((size_t)hd * Tp), vpanels((size_t)hd * Tp), krows((size_t)T * hdp);
        std::vector<float> P((size_t)QB * Tp), dS((size_t)QB * Tp), qrows((size_t)QB * hdp), dorows((size_t)QB * hdp);
        #pragma omp for schedule(dynamic, 1) collapse(2)
        for (int b = 0; b < B; b++)
            for (int g = 0; g < nkv; g++) {
                const size_t r0 = (size_t)b * T;
                const int32_t* sg = seg + r0;
                float* dkg = dk + r0 * ks + g * hd;
                float* dvg = dv + r0 * ks + g * hd;
                for (int t = 0; t < T; t++) {
                    memset(dkg + t * ks, 0, hd * sizeof(float));
                    memset(dvg + t * ks, 0, hd * sizeof(float));
                }
                pack_panels(kpanels.data(), k + r0 * ks + g * hd, ks, T, hd);
                pack_panels(vpanels.data(), v + r0 * ks + g * hd, ks, T, hd);
                pack_rows(krows.data(), k + r0 * ks + g * hd, ks, T, hd, hdp);
                for (int h = g * group; h < (g + 1) * group; h++)
                    for (int t0 = 0; t0 < T; t0 += QB) {
                        // Keys kb .. t0 + qn − 1: n columns of P and dS.
                        const int qn = std::min(QB, T - t0), kb = first_key(t0, qn, window, seg_first.data() + r0),
                                  n = t0 + qn - kb;
                        const size_t row0 = (r0 + t0) * qs + h * hd;  // this block's first q/dO/dq row
                        probabilities(P.data(), q + row0, qs, kpanels.data(), Tp, sg, t0, qn, kb, window, hd, scale,
                                      lse + (r0 + t0) * nh + h, nullptr, nh);
                        block_product(qn, n, hd, dout + row0, qs, 1, vpanels.data() + (size_t)kb * hd, NR,
                                      (size_t)hd * NR, dS.data(), Tp, false);  // dP
                        for (int i = 0; i < qn; i++) {
                            float D = dot(dout + row0 + i * qs, out + row0 + i * qs, hd);
                            float* p = P.data() + (size_t)i * Tp;
                            float* ds = dS.data() + (size_t)i * Tp;
                            for (int j = 0; j < n; j++) ds[j] = p[j] * (ds[j] - D) * scale;
                        }
                        block_product(qn, hd, n, dS.data(), Tp, 1, krows.data() + (size_t)kb * hdp, hdp, NR,
                                      dq + row0, qs, false);
                        pack_rows(qrows.data(), q + row0, qs, qn, hd, hdp);
                        pack_rows(dorows.data(), dout + row0, qs, qn, hd, hdp);
                        // dK += dSᵀQ, dV += PᵀdO on the rows of keys kb..
                        block_product(n, hd, qn, dS.data(), 1, Tp, qrows.data(), hdp, NR, dkg + kb * ks, ks, true);
                        block_product(n, hd, qn, P.data(), 1, Tp, dorows.data(), hdp, NR, dvg + kb * ks, ks, true);
                    }
            }
    }
}

void attention_decode(float* out, const float* q, const float* kcache, const float* vcache, const int32_t* len, int S,
                      int max_T, int nh, int nkv, int hd, float scale, int window) {
    const int group = nh / nkv;
    #pragma omp parallel
    {
        std::vector<float> p(max_T);
        #pragma omp for schedule(static) collapse(2)
        for (int s = 0; s < S; s++)
            for (int h = 0; h < nh; h++) {
                const int g = h / group, n = len[s], j0 = window > 0 ? std::max(0, n - window) : 0;
                const float* qs = q + ((size_t)s * nh + h) * hd;
                const float* K = kcache + (size_t)s * max_T * nkv * hd;
                const float* V = vcache + (size_t)s * max_T * nkv * hd;
                float mx = -INFINITY, sum = 0.0f;
                for (int j = j0; j < n; j++) {
                    p[j] = dot(qs, K + ((size_t)j * nkv + g) * hd, hd) * scale;
                    mx = std::max(mx, p[j]);
                }
                #pragma omp simd reduction(+ : sum)
                for (int j = j0; j < n; j++) sum += (p[j] = exp_fast(p[j] - mx));
                float* o = out + ((size_t)s * nh + h) * hd;
                memset(o, 0, hd * sizeof(float));
                for (int j = j0; j < n; j++) {
                    const float* vj = V + ((size_t)j * nkv + g) * hd;
                    float w = p[j] / sum;
                    for (int d = 0; d < hd; d++) o[d] += w * vj[d];
                }
            }
    }
}

}  // namespace cpu

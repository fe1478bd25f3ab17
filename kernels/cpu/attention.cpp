// Causal grouped-query attention, flash-attention style on the CPU: for each query row the scores
// are computed, softmaxed and applied on the fly; only the row's log-sum-exp is kept, so memory is
// O(T) per thread, never O(T²).
//
// Forward, per query t of head h (kv head g = h / (nh/nkv)):
//   s_j = q_t·k_j / sqrt(hd) for allowed j,  lse_t = log Σ_j exp(s_j),  o_t = Σ_j exp(s_j − lse_t) v_j
// Backward (p_j recomputed from lse):
//   D_t = dO_t·O_t,  dp_j = dO_t·v_j,  ds_j = p_j (dp_j − D_t)
//   dq_t = Σ_j ds_j k_j / sqrt(hd),  dk_j += ds_j q_t / sqrt(hd),  dv_j += p_j dO_t
// Key j is allowed for query t when j <= t and seg[j] == seg[t]: causal, and never across packed
// examples or into padding (padding has seg −1 and only sees other padding).
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/kernels.h"

namespace cpu {

// The simd reductions let the compiler vectorise (a float sum is otherwise kept in source order);
// the order is still fixed for a given build, so results stay deterministic.
static inline float dot(const float* __restrict a, const float* __restrict b, int n) {
    float s = 0.0f;
    #pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

// y += a·x
static inline void axpy(float* __restrict y, float a, const float* __restrict x, int n) {
    #pragma omp simd
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const int32_t* seg,
                       int B, int T, int nh, int nkv, int hd) {
    const float scale = 1.0f / std::sqrt((float)hd);
    const int group = nh / nkv;
    #pragma omp parallel
    {
        std::vector<float> p(T);
        #pragma omp for schedule(dynamic, 1) collapse(2)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < nh; h++) {
                int g = h / group;
                const int32_t* sg = seg + (size_t)b * T;
                for (int t = 0; t < T; t++) {
                    const float* qt = q + (((size_t)b * T + t) * nh + h) * hd;
                    float mx = -INFINITY;
                    for (int j = 0; j <= t; j++) {
                        if (sg[j] != sg[t]) { p[j] = -INFINITY; continue; }
                        p[j] = dot(qt, k + (((size_t)b * T + j) * nkv + g) * hd, hd) * scale;
                        mx = std::max(mx, p[j]);
                    }
                    float sum = 0.0f;
                    for (int j = 0; j <= t; j++) {
                        p[j] = sg[j] == sg[t] ? std::exp(p[j] - mx) : 0.0f;
                        sum += p[j];
                    }
                    float inv = 1.0f / sum;
                    float* ot = out + (((size_t)b * T + t) * nh + h) * hd;
                    memset(ot, 0, hd * sizeof(float));
                    for (int j = 0; j <= t; j++)
                        if (p[j] != 0.0f) axpy(ot, p[j] * inv, v + (((size_t)b * T + j) * nkv + g) * hd, hd);
                    lse[((size_t)b * T + t) * nh + h] = mx + std::log(sum);
                }
            }
    }
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* lse,
                        const float* q, const float* k, const float* v, const int32_t* seg, int B, int T, int nh,
                        int nkv, int hd) {
    const float scale = 1.0f / std::sqrt((float)hd);
    const int group = nh / nkv;
    // One task per (row, kv head): all query heads that share a kv head write the same dk/dv, so
    // they run in one thread, in a fixed order (no atomics, deterministic). For each query the
    // probabilities p_j and score gradients ds_j are computed first (dot products), then applied
    // in three separate row updates, each a plain vectorisable axpy.
    #pragma omp parallel
    {
        std::vector<float> p(T), ds(T);
        #pragma omp for schedule(dynamic, 1) collapse(2)
        for (int b = 0; b < B; b++)
            for (int g = 0; g < nkv; g++) {
                const int32_t* sg = seg + (size_t)b * T;
                for (int t = 0; t < T; t++) {
                    memset(dk + (((size_t)b * T + t) * nkv + g) * hd, 0, hd * sizeof(float));
                    memset(dv + (((size_t)b * T + t) * nkv + g) * hd, 0, hd * sizeof(float));
                }
                for (int h = g * group; h < (g + 1) * group; h++)
                    for (int t = 0; t < T; t++) {
                        size_t row = ((size_t)b * T + t) * nh + h;
                        const float* qt = q + row * hd;
                        const float* dot_ = dout + row * hd;
                        float* dqt = dq + row * hd;
                        memset(dqt, 0, hd * sizeof(float));
                        float D = dot(dot_, out + row * hd, hd), L = lse[row];
                        for (int j = 0; j <= t; j++) {
                            size_t krow = (((size_t)b * T + j) * nkv + g) * hd;
                            if (sg[j] != sg[t]) { p[j] = ds[j] = 0.0f; continue; }
                            p[j] = std::exp(dot(qt, k + krow, hd) * scale - L);
                            ds[j] = p[j] * (dot(dot_, v + krow, hd) - D) * scale;
                        }
                        for (int j = 0; j <= t; j++) {
                            if (p[j] == 0.0f) continue;
                            size_t krow = (((size_t)b * T + j) * nkv + g) * hd;
                            axpy(dqt, ds[j], k + krow, hd);
                            axpy(dk + krow, ds[j], qt, hd);
                            axpy(dv + krow, p[j], dot_, hd);
                        }
                    }
            }
    }
}

}  // namespace cpu

namespace cpu {

void attention_decode(float* out, const float* q, const float* kcache, const float* vcache, const int32_t* len, int S,
                      int max_T, int nh, int nkv, int hd) {
    const float scale = 1.0f / std::sqrt((float)hd);
    const int group = nh / nkv;
    #pragma omp parallel
    {
        std::vector<float> p(max_T);
        #pragma omp for schedule(static) collapse(2)
        for (int s = 0; s < S; s++)
            for (int h = 0; h < nh; h++) {
                int g = h / group, n = len[s];
                const float* qs = q + ((size_t)s * nh + h) * hd;
                const float* K = kcache + (size_t)s * max_T * nkv * hd;
                const float* V = vcache + (size_t)s * max_T * nkv * hd;
                float mx = -INFINITY, sum = 0.0f;
                for (int j = 0; j < n; j++) {
                    p[j] = dot(qs, K + ((size_t)j * nkv + g) * hd, hd) * scale;
                    mx = std::max(mx, p[j]);
                }
                for (int j = 0; j < n; j++) sum += (p[j] = std::exp(p[j] - mx));
                float* o = out + ((size_t)s * nh + h) * hd;
                memset(o, 0, hd * sizeof(float));
                for (int j = 0; j < n; j++) {
                    const float* vj = V + ((size_t)j * nkv + g) * hd;
                    float w = p[j] / sum;
                    for (int d = 0; d < hd; d++) o[d] += w * vj[d];
                }
            }
    }
}

}  // namespace cpu

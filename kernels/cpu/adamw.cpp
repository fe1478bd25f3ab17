// AdamW (Loshchilov & Hutter 2019) with decoupled weight decay, its 8-bit variant (bitsandbytes'
// blockwise AdamW8bit), and the squared gradient norm used for clipping by global norm.
#include <array>
#include <cmath>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/nf4_tables.h"

namespace cpu {

void adamw_update(float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, float grad_scale, int t) {
    float bc1 = 1.0f - std::pow(beta1, (float)t), bc2 = 1.0f - std::pow(beta2, (float)t);
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * grad_scale;
        m[i] = beta1 * m[i] + (1.0f - beta1) * gi;
        v[i] = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        float mhat = m[i] / bc1, vhat = v[i] / bc2;
        p[i] -= lr * (mhat / (std::sqrt(vhat) + eps) + weight_decay * p[i]);
    }
}

// The 8-bit moments (Dettmers et al. 2022, "8-bit Optimizers via Block-wise Quantization"): m and v
// live as 8-bit codes of bitsandbytes' dynamic maps (signed for m, unsigned for v), each block of 256
// scaled by its absmax. A step decodes the block's moments, runs the FP32 update above term for term,
// and encodes them again against the block's new absmax (bitsandbytes' CPU path, blockwise). The
// decoded moments, not the codes, carry the update: a moment's rounding error is at most half a code
// step of its block, and the dynamic map's steps are relative (dense near 0), so small moments beside
// a large one keep about two significant digits instead of flushing to 0.
void adamw8bit_update(float* p, const float* g, uint8_t* m, uint8_t* v, float* absmax_m, float* absmax_v, size_t n,
                      float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale, int t) {
    static const DynamicCoder scoder(true), ucoder(false);
    const std::array<float, 256>&smap = scoder.map, &umap = ucoder.map;
    float bc1 = 1.0f - std::pow(beta1, (float)t), bc2 = 1.0f - std::pow(beta2, (float)t);
    const size_t blocks = (n + kAdam8Block - 1) / kAdam8Block;
    #pragma omp parallel for schedule(static)
    for (size_t b = 0; b < blocks; b++) {
        // Passes over the block: decode (table lookups), the update (plain arithmetic on arrays, which
        // vectorises as adamw_update's loop does; a max reduction in it would keep it scalar: the
        // compiler may not reorder max), the absmax values, encode.
        const size_t i0 = b * kAdam8Block, len = std::min(n, i0 + kAdam8Block) - i0;
        float mv[kAdam8Block], vv[kAdam8Block], am = 0.0f, av = 0.0f;
        for (size_t k = 0; k < len; k++) mv[k] = smap[m[i0 + k]] * absmax_m[b], vv[k] = umap[v[i0 + k]] * absmax_v[b];
        float* pb = p + i0;
        const float* gb = g + i0;
        for (size_t k = 0; k < len; k++) {
            float gi = gb[k] * grad_scale;
            float mi = beta1 * mv[k] + (1.0f - beta1) * gi, vi = beta2 * vv[k] + (1.0f - beta2) * gi * gi;
            float mhat = mi / bc1, vhat = vi / bc2;
            pb[k] -= lr * (mhat / (std::sqrt(vhat) + eps) + weight_decay * pb[k]);
            mv[k] = mi, vv[k] = vi;
        }
        for (size_t k = 0; k < len; k++) am = std::max(am, std::fabs(mv[k])), av = std::max(av, vv[k]);
        // as quantize_blockwise8: scaled by the reciprocal of the absmax (0 for an all-zero block)
        const float inv_m = am > 0.0f ? 1.0f / am : 0.0f, inv_v = av > 0.0f ? 1.0f / av : 0.0f;
        for (size_t k = 0; k < len; k++) m[i0 + k] = scoder.code(mv[k] * inv_m), v[i0 + k] = ucoder.code(vv[k] * inv_v);
        absmax_m[b] = am, absmax_v[b] = av;
    }
}

double sum_squares(const float* g, size_t n) {
    // Fixed-size chunks summed in index order: the result does not depend on the thread count.
    const size_t chunk = 1 << 14;
    size_t nchunks = (n + chunk - 1) / chunk;
    std::vector<double> part(nchunks);
    #pragma omp parallel for schedule(static)
    for (size_t c = 0; c < nchunks; c++) {
        double s = 0.0;
        size_t end = std::min(n, (c + 1) * chunk);
        for (size_t i = c * chunk; i < end; i++) s += (double)g[i] * g[i];
        part[c] = s;
    }
    double total = 0.0;
    for (double s : part) total += s;
    return total;
}

}  // namespace cpu

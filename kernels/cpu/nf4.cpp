// NF4 and the 8-bit dynamic map of bitsandbytes, on the CPU: the reference the CUDA kernels must
// match bit for bit. Both round to the nearest code; a value exactly between two codes goes to the
// lower one, as bitsandbytes' comparison tree (x > midpoint) does. Values are scaled by the
// reciprocal of the block's absmax (multiplied, not divided), again as bitsandbytes does, so the
// same inputs land on the same side of every midpoint.
#include <algorithm>
#include <array>
#include <cmath>

#include "kernels/kernels.h"
#include "kernels/nf4_tables.h"

namespace cpu {
namespace {

inline uint8_t nf4_code(float x) {
    int c = 0;
    for (int i = 1; i < 16; i++)
        if (x > 0.5f * (kNF4[i - 1] + kNF4[i])) c = i;  // codes are sorted: the last midpoint passed wins
    return (uint8_t)c;
}

// The signed 8-bit dynamic map and its encoder (kernels/nf4_tables.h), built once.
const DynamicCoder& dynamic_coder() {
    static const DynamicCoder coder(true);
    return coder;
}

// Absmax of x[i0, i1) into *absmax; returns its reciprocal (0 for an all-zero block, whose values
// then all map to code 0.0).
inline float block_scale(const float* x, size_t i0, size_t i1, float* absmax) {
    float amax = 0.0f;
    for (size_t i = i0; i < i1; i++) amax = std::max(amax, std::fabs(x[i]));
    *absmax = amax;
    return amax > 0.0f ? 1.0f / amax : 0.0f;
}

}  // namespace

void nf4_quantize(uint8_t* codes, float* absmax, const float* w, size_t n) {
    size_t blocks = (n + 63) / 64;
    #pragma omp parallel for schedule(static)
    for (size_t b = 0; b < blocks; b++) {
        size_t i0 = b * 64, i1 = std::min(n, i0 + 64);
        float inv = block_scale(w, i0, i1, &absmax[b]);
        for (size_t i = i0; i < i1; i += 2) {  // blocks start even, so pairs never straddle blocks
            uint8_t hi = nf4_code(w[i] * inv), lo = i + 1 < i1 ? nf4_code(w[i + 1] * inv) : 0;
            codes[i / 2] = (uint8_t)(hi << 4 | lo);
        }
    }
}

void quantize_blockwise8(uint8_t* q, float* absmax, const float* x, size_t n) {
    const DynamicCoder& coder = dynamic_coder();
    size_t blocks = (n + 255) / 256;
    #pragma omp parallel for schedule(static)
    for (size_t b = 0; b < blocks; b++) {
        size_t i0 = b * 256, i1 = std::min(n, i0 + 256);
        float inv = block_scale(x, i0, i1, &absmax[b]);
        for (size_t i = i0; i < i1; i++) q[i] = coder.code(x[i] * inv);
    }
}

void nf4_dequantize(float* w, const uint8_t* codes, const uint8_t* qabsmax, const float* qscale, float offset,
                    size_t n) {
    const std::array<float, 256>& map = dynamic_coder().map;
    size_t blocks = (n + 63) / 64;
    #pragma omp parallel for schedule(static)
    for (size_t b = 0; b < blocks; b++) {
        // The block's absmax back from its 8-bit code: one fused multiply-add, written out so every
        // compiler and flag (and the CUDA kernel) rounds alike.
        float a = std::fma(map[qabsmax[b]], qscale[b / 256], offset);
        for (size_t i = b * 64; i < std::min(n, b * 64 + 64); i += 2) {  // blocks start even: pairs stay inside
            w[i] = kNF4[codes[i / 2] >> 4] * a;
            if (i + 1 < n) w[i + 1] = kNF4[codes[i / 2] & 15] * a;
        }
    }
}

}  // namespace cpu

#include "model/nf4.h"

NF4Weight nf4_weight_quantize(const Ops& ops, const float* w, size_t n) {
    NF4Weight q;
    q.n = n;
    size_t blocks = (n + 63) / 64;
    q.codes.resize((n + 1) / 2);
    std::vector<float> absmax(blocks);
    ops.nf4_quantize(q.codes.data(), absmax.data(), w, n);
    // Double quantization (QLoRA §3): the absmax values are positive and similar, so centre them
    // on their mean and store them in 8 bits per block of 256.
    double sum = 0;
    for (float a : absmax) sum += a;
    q.offset = (float)(sum / blocks);
    for (float& a : absmax) a -= q.offset;
    q.qabsmax.resize(blocks);
    q.qscale.resize((blocks + 255) / 256);
    ops.quantize_blockwise8(q.qabsmax.data(), q.qscale.data(), absmax.data(), blocks);
    return q;
}

void nf4_weight_dequantize(const Ops& ops, const NF4Weight& q, float* out, std::vector<float>& absmax_scratch) {
    size_t blocks = q.qabsmax.size();
    if (absmax_scratch.size() < blocks) absmax_scratch.resize(blocks);  // grows only: one buffer serves every weight
    ops.dequantize_blockwise8(absmax_scratch.data(), q.qabsmax.data(), q.qscale.data(), blocks);
    for (size_t b = 0; b < blocks; b++) absmax_scratch[b] += q.offset;
    ops.nf4_dequantize(out, q.codes.data(), absmax_scratch.data(), q.n);
}

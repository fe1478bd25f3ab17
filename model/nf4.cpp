#include "model/nf4.h"

#include <algorithm>

#include "model/util.h"

namespace {
// Double quantization (QLoRA §3): the absmax values are positive and similar, so centre them on
// their mean and store them in 8 bits per block of 256.
void double_quantize(NF4Weight& q, std::vector<float>& absmax, const Ops& ops) {
    size_t blocks = absmax.size();
    double sum = 0;
    for (float a : absmax) sum += a;
    q.offset = (float)(sum / blocks);
    for (float& a : absmax) a -= q.offset;
    q.qabsmax.resize(blocks);
    q.qscale.resize((blocks + 255) / 256);
    ops.quantize_blockwise8(q.qabsmax.data(), q.qscale.data(), absmax.data(), blocks);
}
}  // namespace

NF4Weight nf4_weight_quantize(const Ops& ops, const float* w, size_t n) {
    NF4Weight q;
    q.n = n;
    q.codes.resize((n + 1) / 2);
    std::vector<float> absmax((n + 63) / 64);
    ops.nf4_quantize(q.codes.data(), absmax.data(), w, n);
    double_quantize(q, absmax, ops);
    return q;
}

NF4Weight nf4_weight_random(size_t n, uint64_t seed) {
    NF4Weight q;
    q.n = n;
    q.codes.resize((n + 1) / 2);
    std::vector<float> absmax((n + 63) / 64);
    const size_t chunk = 1 << 16;
    #pragma omp parallel for schedule(static)
    for (size_t c0 = 0; c0 < q.codes.size(); c0 += chunk) {
        Rng rng(seed ^ (c0 * 0x9E3779B97F4A7C15ull));
        for (size_t i = c0; i < std::min(q.codes.size(), c0 + chunk); i++) q.codes[i] = (uint8_t)rng.next_u64();
    }
    Rng rng(seed);
    for (float& a : absmax) a = 0.02f * (2.0f + 0.8f * rng.uniform());  // E[max of 64 |N(0,1)|] ≈ 2.4
    double_quantize(q, absmax, cpu_ops());
    return q;
}

NF4View nf4_view(const NF4Weight& q) {
    NF4View v;
    v.codes = q.codes.data();
    v.qabsmax = q.qabsmax.data();
    v.qscale = q.qscale.data();
    v.offset = q.offset;
    v.n = q.n;
    return v;
}

void nf4_weight_dequantize(const Ops& ops, const NF4View& q, act* out) {
    ops.nf4_dequantize(out, q.codes, q.qabsmax, q.qscale, q.offset, q.n);
}

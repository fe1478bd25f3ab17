// A frozen weight stored in NF4 with double-quantized scales (QLoRA's storage), and the model's
// switch from FP32 base weights to NF4 ones.
//
// Bytes per weight: n/2 (4-bit codes) + n/64 (one 8-bit absmax code per block of 64)
// + 4·n/(64·256) (one FP32 scale per 256 absmax codes) ≈ 0.5159 n, i.e. ≈ 4.127 bits per parameter
// (4.5 with plain FP32 absmax values).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/kernels.h"

struct NF4Weight {
    size_t n = 0;
    std::vector<uint8_t> codes;    // ceil(n/2): two NF4 codes per byte
    std::vector<uint8_t> qabsmax;  // per block of 64: 8-bit dynamic code of (absmax − offset)
    std::vector<float> qscale;     // per 256 absmax codes: their block's absmax (blockwise 8-bit)
    float offset = 0.0f;           // mean of the absmax values, taken out before quantizing them
    size_t bytes() const { return codes.size() + qabsmax.size() + qscale.size() * sizeof(float) + sizeof(float); }
};

NF4Weight nf4_weight_quantize(const Ops& ops, const float* w, size_t n);
// out[n] = the weight as FP32; absmax_scratch (grown when too small) takes the reconstructed absmax values.
void nf4_weight_dequantize(const Ops& ops, const NF4Weight& q, float* out, std::vector<float>& absmax_scratch);

// Offsets with this bit set name an NF4 weight (its index in Model::nf4) instead of a position in
// Model::params: the model's one accessor for weights (Pass::w) dequantizes those on use.
constexpr size_t kNF4Tag = (size_t)1 << 62;

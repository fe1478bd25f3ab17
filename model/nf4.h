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

// Quantizes on the CPU (the weights arrive from a file or an initialiser in host memory).
NF4Weight nf4_weight_quantize(const Ops& ops, const float* w, size_t n);
// A random NF4 weight of n values, as if quantized from N(0, 0.02²): uniform random codes, block
// absmax values spread around the expected max of 64 such normals, double-quantized like real ones.
// For memory and speed benchmarks of shapes whose FP32 weights would not fit in host memory.
NF4Weight nf4_weight_random(size_t n, uint64_t seed);

// Where an NF4 weight's parts are in some backend's memory (host vectors, or a device copy).
struct NF4View {
    const uint8_t* codes = nullptr;
    const uint8_t* qabsmax = nullptr;
    const float* qscale = nullptr;
    float offset = 0.0f;
    size_t n = 0;
    size_t blocks() const { return (n + 63) / 64; }
};
NF4View nf4_view(const NF4Weight& q);  // the host copy
// out[n] = the weight in the storage type (one pass: the absmax values are decoded on the way).
void nf4_weight_dequantize(const Ops& ops, const NF4View& q, act* out);

// Offsets with this bit set name an NF4 weight (its index in Model::nf4) instead of a position in
// Model::params: the model's one accessor for weights (Pass::w) dequantizes those on use.
constexpr size_t kNF4Tag = (size_t)1 << 62;

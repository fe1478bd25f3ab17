// Block layouts follow ggml-quants.c (dequantize_row_*); the PyPI `gguf` package's quants.py holds
// the same layouts in numpy and generated tests/fixtures/convert/quants.gguf, which the tests compare
// against. Every multi-byte field is little-endian; `d`/`m`/`dmin` scales are IEEE half floats.
#include "model/dequant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "model/util.h"
#include "model/weights.h"

namespace {
const size_t QK = 32;    // elements per block of the legacy formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0)
const size_t QK_K = 256; // elements per super-block of the k-quants

uint16_t le16(const uint8_t* p) { return (uint16_t)(p[0] | (p[1] << 8)); }
float half_at(const uint8_t* p) { return f16_to_f32(le16(p)); }

// Q8_0 (34 bytes): d, then 32 int8 values. x = d * q.
void deq_q8_0(const uint8_t* b, float* y) {
    float d = half_at(b);
    for (size_t i = 0; i < QK; i++) y[i] = d * (float)(int8_t)b[2 + i];
}

// Q4_0 (18 bytes): d, then 16 bytes of nibbles. Element i (< 16) is the low nibble of byte i and
// element i + 16 its high nibble; x = d * (q - 8).
void deq_q4_0(const uint8_t* b, float* y) {
    float d = half_at(b);
    const uint8_t* qs = b + 2;
    for (size_t i = 0; i < QK / 2; i++) {
        y[i] = d * (float)((qs[i] & 0x0F) - 8);
        y[i + QK / 2] = d * (float)((qs[i] >> 4) - 8);
    }
}

// Q4_1 (20 bytes): d, m, then nibbles as in Q4_0 but unsigned; x = d * q + m.
void deq_q4_1(const uint8_t* b, float* y) {
    float d = half_at(b), m = half_at(b + 2);
    const uint8_t* qs = b + 4;
    for (size_t i = 0; i < QK / 2; i++) {
        y[i] = d * (float)(qs[i] & 0x0F) + m;
        y[i + QK / 2] = d * (float)(qs[i] >> 4) + m;
    }
}

// Q5_0 (22 bytes) and Q5_1 (24 bytes): d (and m for Q5_1), 4 bytes qh holding the fifth bit of each
// of the 32 values (bit i for element i), then nibbles as in Q4_0. Q5_0: x = d * (q - 16); Q5_1:
// x = d * q + m.
void deq_q5(const uint8_t* qh_bytes, const uint8_t* qs, float d, float m, bool offset, float* y) {
    uint32_t qh;
    memcpy(&qh, qh_bytes, 4);  // little-endian, as every field here
    for (size_t i = 0; i < QK / 2; i++) {
        const int lo = (qs[i] & 0x0F) | (((qh >> i) & 1) << 4), hi = (qs[i] >> 4) | (((qh >> (i + 16)) & 1) << 4);
        y[i] = offset ? d * (float)lo + m : d * (float)(lo - 16);
        y[i + QK / 2] = offset ? d * (float)hi + m : d * (float)(hi - 16);
    }
}
void deq_q5_0(const uint8_t* b, float* y) { deq_q5(b + 2, b + 6, half_at(b), 0.0f, false, y); }
void deq_q5_1(const uint8_t* b, float* y) { deq_q5(b + 4, b + 8, half_at(b), half_at(b + 2), true, y); }

// The k-quants' 8 sub-block scales and mins, 6 bits each in 12 bytes: sub-block j < 4 has scale
// sc[j] & 63 and min sc[j+4] & 63; sub-block j >= 4 keeps the low 4 bits of both in sc[j+4] (scale
// low nibble, min high nibble) and their top 2 bits in the top bits of sc[j-4] (scale) and sc[j] (min).
void scale_min_k4(const uint8_t* sc, int j, int& scale, int& min) {
    if (j < 4) {
        scale = sc[j] & 63;
        min = sc[j + 4] & 63;
    } else {
        scale = (sc[j + 4] & 0x0F) | ((sc[j - 4] >> 6) << 4);
        min = (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4);
    }
}

// Q4_K (144 bytes): d, dmin, the 12 bytes of scales and mins (scale_min_k4) for 8 sub-blocks of 32,
// 128 bytes of nibbles. Sub-blocks 2k and 2k+1 are the low and high nibbles of qs[32k..32k+31].
// Q5_K (176 bytes): the same with qh[32] before the nibbles, the fifth bits: sub-block j takes bit j
// of qh[l] for its value l. x = d * scale * q - dmin * min.
void deq_k_quant(const uint8_t* b, const uint8_t* qh, const uint8_t* qs, float* y) {
    float d = half_at(b), dmin = half_at(b + 2);
    for (int j = 0; j < 8; j++) {
        int scale, min;
        scale_min_k4(b + 4, j, scale, min);
        float dl = d * (float)scale, ml = dmin * (float)min;
        const uint8_t* q = qs + 32 * (j / 2);
        int shift = (j % 2) * 4;
        for (int l = 0; l < 32; l++) {
            const int high = qh ? ((qh[l] >> j) & 1) << 4 : 0;
            y[32 * j + l] = dl * (float)(((q[l] >> shift) & 0x0F) | high) - ml;
        }
    }
}
void deq_q4_k(const uint8_t* b, float* y) { deq_k_quant(b, nullptr, b + 16, y); }
void deq_q5_k(const uint8_t* b, float* y) { deq_k_quant(b, b + 16, b + 48, y); }

// Q6_K (210 bytes): ql[128] low 4 bits, qh[64] high 2 bits, 16 int8 scales (one per 16 values), d.
// Each half of 128 values uses ql[64h..64h+63] and qh[32h..32h+31]; within it, value 32g + l
// (g = 0..3, l = 0..31) takes the low nibble of ql[l + 32(g%2)] for g < 2 and the high nibble for
// g >= 2, and bits 2g..2g+1 of qh[l]. x = d * scale[value / 16] * (q - 32).
void deq_q6_k(const uint8_t* b, float* y) {
    const uint8_t* ql = b;
    const uint8_t* qh = b + 128;
    const int8_t* scales = (const int8_t*)(b + 192);
    float d = half_at(b + 208);
    for (int h = 0; h < 2; h++) {
        for (int g = 0; g < 4; g++) {
            for (int l = 0; l < 32; l++) {
                int lo = (ql[64 * h + l + 32 * (g % 2)] >> (g < 2 ? 0 : 4)) & 0x0F;
                int hi = (qh[32 * h + l] >> (2 * g)) & 3;
                int i = 128 * h + 32 * g + l;
                y[i] = d * (float)scales[i / 16] * (float)((lo | (hi << 4)) - 32);
            }
        }
    }
}

struct TypeInfo {
    uint32_t type;
    size_t block_elems, block_bytes;
    void (*block)(const uint8_t*, float*);  // nullptr for the plain float types
};
const TypeInfo kTypes[] = {
    {GGML_F32, 1, 4, nullptr},   {GGML_F16, 1, 2, nullptr},        {GGML_BF16, 1, 2, nullptr},
    {GGML_Q8_0, QK, 34, deq_q8_0}, {GGML_Q4_0, QK, 18, deq_q4_0},   {GGML_Q4_1, QK, 20, deq_q4_1},
    {GGML_Q5_0, QK, 22, deq_q5_0},  {GGML_Q5_1, QK, 24, deq_q5_1},
    {GGML_Q4_K, QK_K, 144, deq_q4_k}, {GGML_Q5_K, QK_K, 176, deq_q5_k}, {GGML_Q6_K, QK_K, 210, deq_q6_k},
};

const TypeInfo* type_info(uint32_t type) {
    for (const TypeInfo& t : kTypes)
        if (t.type == type) return &t;
    return nullptr;
}
}  // namespace

const char* ggml_type_name(uint32_t type) {
    // ggml.h's enum ggml_type; codes 4, 5 and 31-33, 36-38 were removed formats.
    static const char* const names[] = {
        "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K", "Q4_K",
        "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
        "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16", "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0",
        "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4", "NVFP4", "Q1_0"};
    return type < sizeof names / sizeof names[0] ? names[type] : "unknown";
}

const char* ggml_supported_types() { return "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K"; }

bool ggml_block_size(uint32_t type, size_t& block_elems, size_t& block_bytes) {
    const TypeInfo* t = type_info(type);
    if (!t) return false;
    block_elems = t->block_elems;
    block_bytes = t->block_bytes;
    return true;
}

void ggml_dequantize(uint32_t type, const void* src, float* dst, size_t n) {
    const TypeInfo* t = type_info(type);
    if (!t) fail("ggml type %s (%u) cannot be dequantised (supported: %s)", ggml_type_name(type), type, ggml_supported_types());
    if (n % t->block_elems) fail("internal error: %zu values are not whole %s blocks", n, ggml_type_name(type));
    const uint8_t* s = (const uint8_t*)src;
    switch (type) {
    case GGML_F32: if (n) memcpy(dst, s, n * 4); return;  // n 0: dst may be null (an empty tensor)
    case GGML_F16: for (size_t i = 0; i < n; i++) dst[i] = half_at(s + 2 * i); return;
    case GGML_BF16: for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32(le16(s + 2 * i)); return;
    default: break;
    }
    size_t nb = n / t->block_elems;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < nb; i++) t->block(s + i * t->block_bytes, dst + i * t->block_elems);
}

float f16_to_f32(uint16_t h) {
    // IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. Rebias the exponent to binary32's
    // 127; subnormal halves (exponent 0) are normal floats, so renormalise them; 31 is inf/NaN.
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF, u;
    if (exp == 0x1F) {
        u = sign | 0x7F800000 | (man << 13);
    } else if (exp != 0) {
        u = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        u = sign;
    } else {
        int e = -1;
        do { man <<= 1; e++; } while (!(man & 0x400));  // shift the leading 1 into the implicit bit
        u = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3FF) << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    const uint32_t ax = x & 0x7FFFFFFF;
    if (ax > 0x7F800000) return sign | 0x7E00;    // NaN
    if (ax >= 0x477FF000) return sign | 0x7C00;   // Inf, or >= 65520: 65504 plus half an ulp and up
    if (ax < 0x38800000) {                        // under 2^-14: a subnormal half, in units of 2^-24
        float a;                                  // (exact: scaling by a power of two)
        memcpy(&a, &ax, 4);
        return sign | (uint16_t)std::nearbyint(a * 16777216.0f);  // nearest, ties to even; 1024 = 2^-14
    }
    uint32_t h = (ax - 0x38000000) >> 13, rest = ax & 0x1FFF;  // exponent 127 → 15, 23 → 10 mantissa bits
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;     // a carry moves into the exponent, as it should
    return sign | (uint16_t)h;
}

void ggml_quantize(uint32_t type, const float* src, void* dst, size_t n) {
    uint8_t* d = (uint8_t*)dst;
    auto put16 = [](uint8_t* p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); };
    switch (type) {
    case GGML_F32: memcpy(d, src, n * 4); return;
    case GGML_F16: for (size_t i = 0; i < n; i++) put16(d + 2 * i, f32_to_f16(src[i])); return;
    case GGML_BF16: for (size_t i = 0; i < n; i++) put16(d + 2 * i, f32_to_bf16(src[i])); return;
    case GGML_Q8_0:
        if (n % QK) fail("internal error: %zu values are not whole Q8_0 blocks", n);
#pragma omp parallel for schedule(static)
        for (size_t b = 0; b < n / QK; b++) {
            const float* x = src + b * QK;
            uint8_t* y = d + b * 34;
            float amax = 0.0f;
            for (size_t i = 0; i < QK; i++) amax = std::max(amax, std::fabs(x[i]));
            const float scale = amax / 127.0f, inv = scale != 0.0f ? 1.0f / scale : 0.0f;
            put16(y, f32_to_f16(scale));
            for (size_t i = 0; i < QK; i++) y[2 + i] = (uint8_t)(int8_t)std::round(x[i] * inv);
        }
        return;
    default: fail("ggml type %s (%u) cannot be written (supported: F32, F16, BF16, Q8_0)", ggml_type_name(type), type);
    }
}

// GGML tensor types, their dequantisation to FP32 and, for the types ./export writes, their
// quantisation (the block formats of ggml-quants.c).
#pragma once
#include <cstddef>
#include <cstdint>

// The ggml_type codes stored in GGUF tensor infos (only those we read have names here; the rest
// are named by ggml_type_name for error messages).
enum GgmlType : uint32_t {
    GGML_F32 = 0, GGML_F16 = 1, GGML_Q4_0 = 2, GGML_Q4_1 = 3, GGML_Q5_0 = 6, GGML_Q5_1 = 7, GGML_Q8_0 = 8,
    GGML_Q4_K = 12, GGML_Q5_K = 13, GGML_Q6_K = 14, GGML_BF16 = 30,
};

// "Q4_K", ... for every code ggml has defined; "unknown" otherwise.
const char* ggml_type_name(uint32_t type);
// Block geometry of a type we can dequantise: `block_elems` values stored in `block_bytes` bytes.
// False for types we do not read (the caller fails naming the tensor).
bool ggml_block_size(uint32_t type, size_t& block_elems, size_t& block_bytes);
// Comma-separated names of the types ggml_dequantize accepts, for error messages.
const char* ggml_supported_types();

// Dequantises `n` values (a multiple of the type's block size) from `src` into `dst`.
void ggml_dequantize(uint32_t type, const void* src, float* dst, size_t n);

float f16_to_f32(uint16_t h);
// IEEE half, rounded to nearest even (subnormals kept; beyond 65504 rounds to infinity, NaN stays NaN).
uint16_t f32_to_f16(float f);

// Quantises `n` values (a multiple of the block size) into `dst`: F32, F16, BF16, or Q8_0 as llama.cpp's
// quantize_row_q8_0_ref does (per 32 values d = max|x| / 127 stored as half, q = round(x / d)).
void ggml_quantize(uint32_t type, const float* src, void* dst, size_t n);

// Pre-quantized Hugging Face checkpoints: the weights people download already quantized, read back
// to FP32 by ./convert (the trainer fine-tunes full-precision weights; --method qlora quantizes them
// to NF4 itself, which for a bitsandbytes NF4 checkpoint gives back the same 4-bit codes).
//
//   bitsandbytes 4-bit (config.json: quantization_config.quant_method "bitsandbytes", load_in_4bit;
//   unsloth's "-bnb-4bit" models): a weight W [out, in] is stored as
//     W                  ceil(n/2) bytes (of any storage dtype), two codes a byte, the high nibble first
//     W.quant_map        the 16 FP32 code values (NF4's or FP4's table)
//     W.absmax           per block of `blocksize` values: its absmax, FP32, or with double
//                        quantization an 8-bit code into W.nested_quant_map, scaled by
//     W.nested_absmax    one FP32 per `nested_blocksize` absmax codes, plus `nested_offset`
//     W.quant_state.bitsandbytes__nf4 (or __fp4)   JSON bytes: shape, blocksize, nested_blocksize,
//                        nested_offset, quant_type
//   so W[i] = quant_map[code i] · absmax[i / blocksize], each absmax
//   nested_quant_map[c] · nested_absmax[b / nested_blocksize] + nested_offset (all FP32, as
//   bitsandbytes' CUDA kernels compute them before rounding to the model's dtype).
//
//   bitsandbytes 8-bit (load_in_8bit, LLM.int8): W int8 [out, in] and MODULE.SCB, FP32 [out] (each row's
//   absmax): W[r][c] = W8[r][c] · SCB[r] · (1/127); MODULE.weight_format must be 0 (row-major).
//
//   FP8 (quant_method "fp8": DeepSeek-V3's and Qwen3's "-FP8" checkpoints): W float8 E4M3 [out, in] and
//   W_scale_inv FP32 [ceil(out/b0), ceil(in/b1)] for blocks of weight_block_size [b0, b1] (128 x 128):
//   W[r][c] = E4M3(W8[r][c]) · W_scale_inv[r/b0][c/b1]. weight_block_size null: one scale per tensor;
//   AutoFP8's checkpoints (no weight_block_size) store that one scale as MODULE.weight_scale.
//
//   compressed-tensors (quant_method "compressed-tensors", llm-compressor's: RedHatAI's "-FP8-dynamic",
//   "-FP8" and "-quantized.w8a8" models), formats float-quantized / int-quantized / naive-quantized:
//   W float8 E4M3 or int8 [out, in] and MODULE.weight_scale, one per tensor, row, group of group_size
//   values of a row, or block of block_structure, multiplied in the same way; symmetric schemes only
//   (no zero points); activation and KV-cache scales (hf_activation_scale) are not needed and left out.
//   pack-quantized (RedHatAI's "-quantized.w4a16"): MODULE.weight_packed int32 [out, ceil(in·b/32)], the
//   b-bit values q + 2^(b-1) of each row packed densely (value i at bit i·b of the row's words, the words
//   little-endian), MODULE.weight_shape [out, in], weight_scale per row or group of a row, and for an
//   asymmetric scheme MODULE.weight_zero_point packed the same way down each column:
//   W[r][c] = (q - z) · scale.
//
//   GPTQ (quant_method "gptq": AutoGPTQ's and GPTQModel's checkpoints, TheBloke's "-GPTQ" models), 2, 4 or
//   8 bits: MODULE.qweight int32 [in·b/32, out], the inputs of each output column packed in order from
//   the low bits; MODULE.qzeros int32 [groups, out·b/32] packed the same way along the outputs, each
//   stored minus one (checkpoint_format "gptq"; "gptq_v2" stores them as they are: GPTQModel adds
//   0x11111111 to a 4-bit word, carries included, as it loads); MODULE.scales FP16 [groups, out];
//   MODULE.g_idx [in], each input's group (act-order), else input / group_size:
//   W[o][i] = (q - z) · scales[g][o].
//   AWQ (quant_method "awq", version "gemm": AutoAWQ's "-AWQ" models), 4 bits: MODULE.qweight int32
//   [in, out/8] and MODULE.qzeros int32 [groups, out/8], output 8k + m in nibble [0,4,1,5,2,6,3,7][m] of
//   word k; zero_point false: z = 8. W[o][i] = (q - z) · scales[i / group_size][o].
//
// Other quantization methods (HQQ, EETQ, ...) are refused by name. The sources below are found by the
// side tensors beside a weight, so layers a checkpoint left unquantized (llm_int8_skip_modules,
// unsloth's dynamic 4-bit) are read as ordinary tensors.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/json.h"
#include "model/safetensors.h"

// What config.json's quantization_config says: the method, and FP8's block size.
struct HfQuantization {
    std::string method;    // "" (none), "bitsandbytes", "fp8" or "compressed-tensors"; others fail in hf_quantization
    bool present = false;  // config.json has a quantization_config (also a dense compressed-tensors one)
    // fp8 and compressed-tensors: 8-bit values (FP8 E4M3, or INT8) times a scale per block of
    // block[0] x block[1] (0: the whole dimension); strategy: tensor, channel (a row), group (of a row), block
    bool int8 = false;
    std::string strategy;
    int64_t block[2] = {0, 0};
    // compressed-tensors pack-quantized (W4A16 and the like): `bits`-bit integers packed densely into
    // int32 words, with zero points when asymmetric
    bool packed = false, zero_points = false;
    int bits = 8;
    // gptq and awq: integers packed along the input dimension (gptq) or AutoAWQ's interleaved columns
    // (awq), a scale and zero point per group of group_size inputs (-1: one group); gptq_v1: the
    // zero points stored minus one, as GPTQ checkpoints (checkpoint_format "gptq") keep them
    int64_t group_size = -1;
    bool gptq_v1 = true;
    bool fp8_default_block = false;  // fp8 without weight_block_size: 128 x 128, or one scale per tensor
    std::string bnb_kind;  // filled while reading: what the bitsandbytes weights turned out to be
    std::string describe() const;  // "bitsandbytes NF4, double-quantized scales", ... for ./convert's report
};
// Reads config.json's quantization_config (absent or null: none); fails naming the key for a method
// that is not read, with what to do instead.
HfQuantization hf_quantization(const JsonValue& config, const std::string& path);

// One weight of the model as the checkpoint stores it: `data` itself (F32/F16/BF16), or quantized,
// with the side tensors that dequantize it (all of them in `parts`, so the importer can tell them from
// tensors it does not know).
struct HfWeight {
    enum Kind { Plain, Bnb4, Bnb8, Scaled, Packed, Gptq, Awq } kind = Plain;
    const SafeTensor* data = nullptr;
    std::vector<const SafeTensor*> parts;
    std::vector<int64_t> shape;  // the weight's own shape (a 4-bit weight's stored tensor is packed)
    // Bnb4
    const SafeTensor *quant_map = nullptr, *absmax = nullptr, *nested_absmax = nullptr, *nested_quant_map = nullptr;
    int64_t blocksize = 0, nested_blocksize = 0;
    float nested_offset = 0.0f;
    std::string quant_type;  // "nf4" or "fp4"
    // Bnb8: per-row scales; Scaled and Packed: the block scales and their block size
    const SafeTensor* scale = nullptr;
    int64_t block[2] = {0, 0};
    // Packed, Gptq, Awq: bits per value, and the packed zero points (nullptr: symmetric); Gptq's g_idx
    // (each input's group, nullptr: input / group_size), group_size and whether its zeros are stored minus one
    int bits = 0;
    const SafeTensor* zero_point = nullptr;
    const SafeTensor* g_idx = nullptr;
    int64_t group_size = 0;
    bool gptq_v1 = true;
};

// How tensor `t` of `st` is stored: quantized when its side tensors are there (each checked: dtype,
// size, the JSON state), else Plain. Fails naming the tensor and what is wrong.
HfWeight hf_weight(const SafetensorsSet& st, const SafeTensor& t, HfQuantization& q);
// The weight's values as FP32 (dst holds the product of w.shape).
void hf_weight_read(const SafetensorsSet& st, const HfWeight& w, float* dst);
// Whether a quantized checkpoint's tensor is a scale of activations or of the KV cache, not of a weight:
// MODULE.input_scale / output_scale (static activation quantization: compressed-tensors, FP8),
// activation_scale (transformers' static FP8), self_attn.k_scale / v_scale / q_scale (compressed-tensors'
// kv_cache_scheme and attention quantization), kv_scale (AutoFP8). They only steer 8-bit inference and
// are left out.
bool hf_activation_scale(const std::string& name);

// FP8 E4M3 ("e4m3fn": bias 7, no infinities, S.1111.111 is NaN) to FP32, exactly.
float f8e4m3_to_f32(uint8_t v);

// Our model out to GGUF v3, the file llama.cpp, ollama and LM Studio run: llama.cpp's tensor names and
// metadata keys, q/k rows permuted back to llama.cpp's interleaved-RoPE order (LLaMA only; Qwen2,
// Qwen3 and Phi-3 are stored as they are, Phi-3's projections fused again as its converter writes
// them), and the tokenizer as tokenizer.ggml.* (byte-level BPE, "gpt2"; padded with unused
// "[PAD<id>]" tokens up to the embedding rows) with the chat template. import_gguf reads it back as
// the same model (the same values for F32; rounded to the chosen type otherwise).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "tokenizer/tokenizer.h"

// Why llama.cpp could not run the model as it is ("" when it can): what export_gguf refuses, and
// ./train's export hint leaves out (SmolLM3 with NoPE other than every 4th layer or with llama3
// RoPE scaling, Gemma 3 other than llama.cpp hard-codes it, Phi-3 with heads x head_dim != dim or
// llama3 RoPE scaling).
std::string gguf_unsupported(const ModelConfig& cfg);

// `type` (GGML_F32, GGML_F16, GGML_BF16 or GGML_Q8_0, model/dequant.h) is used for every matrix;
// norms and biases stay F32, and a matrix whose rows are not whole Q8_0 blocks is written F16, as
// llama.cpp's converter does. Written atomically.
void export_gguf(const std::string& path, const ModelConfig& cfg, const std::vector<float>& params, const Tokenizer& tok,
                 uint32_t type);

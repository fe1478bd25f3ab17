// Our model out to a Hugging Face directory that transformers loads as it is
// (AutoModelForCausalLM.from_pretrained(dir), AutoTokenizer.from_pretrained(dir)): config.json,
// model.safetensors (F32 or BF16, HF names and [out, in] layout: our layout, so nothing is permuted),
// tokenizer.json and tokenizer_config.json. import_hf_dir reads it back as the same model. This is
// how a full fine-tune, or a LoRA merged into its base, goes to other tools (and from there to
// llama.cpp's convert_hf_to_gguf.py).
#pragma once
#include <string>
#include <vector>

#include "model/config.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"

// Creates `dir` when needed, and refuses one that holds other files than these four (an earlier
// export's may be overwritten); every file is written atomically. The architecture is LlamaForCausalLM,
// Qwen2ForCausalLM when the q/k/v projections have biases, Qwen3ForCausalLM with QK-norm; the llama3 RoPE scaling when the config
// has it, and no sliding window (what this trainer computes).
void export_hf_dir(const std::string& dir, const ModelConfig& cfg, const std::vector<float>& params, const Tokenizer& tok,
                   DType dtype);

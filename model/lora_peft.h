// LoRA adapters to and from Hugging Face PEFT: adapter_model.safetensors + adapter_config.json, which
// `PeftModel.from_pretrained(base, dir)` loads onto the same base model, and which every tool here
// that takes an adapter reads as well as our .lora.
#pragma once
#include <string>
#include <vector>

#include "model/config.h"
#include "model/lora.h"

// Tensor names as PEFT saves them: base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight
// ([r, in]) and .lora_B.weight ([out, r]), FP32. Creates `dir` when needed.
void lora_export_peft(const std::string& dir, const ModelConfig& cfg, const LoraConfig& lc,
                      const std::vector<float>& adapters);

// A PEFT LoRA adapter directory onto `cfg`: rank, alpha, dropout and rsLoRA from adapter_config.json,
// the adapted projections from the tensors in adapter_model.safetensors (F32, F16 or BF16), which
// must cover every layer with the same set. What our LoRA cannot express is refused naming the key
// or tensor: DoRA, bias training, modules_to_save, per-module rank or alpha patterns, some layers
// only, fan_in_fan_out, other PEFT types, a pickled adapter_model.bin.
void lora_import_peft(const std::string& dir, const ModelConfig& cfg, LoraConfig& lc, std::vector<float>& adapters);
// An adapter from a .lora file or a PEFT directory.
void lora_load_any(const std::string& path, const ModelConfig& cfg, LoraConfig& lc, std::vector<float>& adapters);

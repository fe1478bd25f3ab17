// LoRA adapters out to Hugging Face PEFT: adapter_model.safetensors + adapter_config.json, which
// `PeftModel.from_pretrained(base, dir)` loads onto the same base model.
#pragma once
#include <string>
#include <vector>

#include "model/config.h"
#include "model/lora.h"

// Tensor names as PEFT saves them: base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight
// ([r, in]) and .lora_B.weight ([out, r]), FP32. Creates `dir` when needed.
void lora_export_peft(const std::string& dir, const ModelConfig& cfg, const LoraConfig& lc,
                      const std::vector<float>& adapters);

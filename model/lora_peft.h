// LoRA adapters to and from Hugging Face PEFT: adapter_model.safetensors + adapter_config.json, which
// `PeftModel.from_pretrained(base, dir)` loads onto the same base model, and which every tool here
// that takes an adapter reads as well as our .lora.
#pragma once
#include <string>
#include <vector>

#include "model/config.h"
#include "model/lora.h"

// The transformers model an adapter is for, which decides PEFT's names for the decoder layers:
// - text: a text-only model (LlamaForCausalLM, Qwen3ForCausalLM, Gemma3ForCausalLM, ...): layers at
//   model.layers.{i};
// - image_text: Gemma 3's image-text model (Gemma3ForConditionalGeneration), which is what
//   AutoModelForCausalLM loads for google/gemma-3-4b, 12b and 27b: layers at model.language_model.layers.{i}.
enum class PeftBase { text = 0, image_text = 1 };
// image_text for a Gemma 3 of width 2560 or more (the 4B, 12B and 27B, released as image-text models
// only), text otherwise (Gemma 3 270M and 1B are text-only).
PeftBase peft_base_default(const ModelConfig& cfg);

// Tensor names as PEFT saves them: base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight
// ([r, in]) and .lora_B.weight ([out, r]), FP32 (model.language_model.layers for image_text, whose
// target_modules is then a regular expression that leaves out the vision tower's q/k/v_proj). Saved
// modules go in as PEFT's modules_to_save (base_model.model.model.embed_tokens.weight,
// base_model.model.lm_head.weight; a tied model's tensor under both names, with ensure_weight_tying),
// trainable tokens as PEFT's trainable_token_indices (...embed_tokens.token_adapter.trainable_tokens_delta
// [k, dim]: a tied model's as a list, an untied model's by module name), some layers only as
// layers_to_transform (in the image-text model's regular expression). Creates `dir` when needed.
// Refuses a `dir` that holds anything but an earlier adapter export (a model export above all).
// Phi-3's adapters go on its fused qkv_proj and gate_up_proj, as PEFT has them: a fused module's B is
// block-diagonal over its projections' (their A's stacked), or their B's stacked where they share one
// A (an adapter PEFT trained). PEFT and vLLM take one rank for all modules: every module then goes out
// at the largest rank this needs, zero-padded, with lora_alpha scaled to keep the scale. Returns the
// rank written (r, but for Phi-3).
int lora_export_peft(const std::string& dir, const ModelConfig& cfg, const LoraConfig& lc,
                     const std::vector<float>& adapters, PeftBase base);
// Why lora_export_peft cannot write this adapter for `cfg`, or "": DoRA on some but not all of the
// projections of one of Phi-3's fused modules (PEFT's magnitude covers the whole module, whose other
// rows would need the base weight's norms).
std::string peft_unexportable(const ModelConfig& cfg, const LoraConfig& lc);
// lora_alpha at another rank with the same scale: alpha / r (rsLoRA: alpha / sqrt(r)) unchanged.
double lora_alpha_at_rank(const LoraConfig& lc, int rank);

// A PEFT LoRA adapter directory onto `cfg`: rank, alpha, dropout and rsLoRA from adapter_config.json,
// the adapted projections from the tensors in adapter_model.safetensors (F32, F16 or BF16), which
// must give every adapted layer the same set (the layers of layers_to_transform, else those the
// tensors cover), under the text model's or the image-text model's layer
// names (both of transformers' forms); adapters on an image-text model's vision tower are left out
// with a note (the model here is text-only). What our LoRA cannot express is refused naming the key
// or tensor: bias training, modules_to_save other than embed_tokens and lm_head (and on a tied model
// one of the two without ensure_weight_tying), per-module rank or alpha patterns, fan_in_fan_out, other PEFT types, a pickled adapter_model.bin. A saved embedding or LM head is read
// whether modules_to_save names it or save_embedding_layers wrote it; trainable_token_indices as a
// list or by module name (embed_tokens, lm_head; on a tied model the same ids for both, or the
// embedding's alone).
void lora_import_peft(const std::string& dir, const ModelConfig& cfg, LoraConfig& lc, std::vector<float>& adapters);
// An adapter from a .lora file or a PEFT directory.
void lora_load_any(const std::string& path, const ModelConfig& cfg, LoraConfig& lc, std::vector<float>& adapters);

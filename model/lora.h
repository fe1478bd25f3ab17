// LoRA adapters (Hu et al. 2021): for each targeted linear layer W [out, in] of each decoder layer,
// A [r, in] and B [out, r] in one flat buffer, so the optimizer and the files see one array.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/weights.h"

enum LoraTarget { LORA_Q, LORA_K, LORA_V, LORA_O, LORA_GATE, LORA_UP, LORA_DOWN, LORA_NUM_TARGETS };
extern const char* const kLoraTargetNames[LORA_NUM_TARGETS];  // "q", "k", "v", "o", "gate", "up", "down"

struct LoraConfig {
    int32_t rank = 8;
    float alpha = 16.0f;
    float dropout = 0.0f;
    int32_t use_rslora = 0;                                         // scale alpha/sqrt(r) instead of alpha/r
    uint32_t targets = (1u << LORA_Q) | (1u << LORA_K) | (1u << LORA_V) | (1u << LORA_O);  // bitmask
    int32_t use_dora = 0;  // DoRA: each adapted weight also has a trained magnitude per output row (kernels.h)
    // PEFT's modules_to_save: base tensors trained in full beside the adapters, as a copy of the base
    // (LORA_SAVE_* bits). A tied model's embedding is its LM head: both bits or neither (lora_saves).
    uint32_t save_modules = 0;
    float scale() const;
    bool has(LoraTarget t) const { return targets >> t & 1u; }
};

// "q,k,v,o" or "all" → bitmask; fails naming the unknown target.
uint32_t lora_parse_targets(const std::string& list);
std::string lora_targets_string(uint32_t mask);

// The base tensors modules_to_save can name: the token embedding and the LM head (PEFT's
// embed_tokens and lm_head), the tensors that continued pretraining and new tokens need trained.
enum LoraSave : uint32_t { LORA_SAVE_EMBED = 1, LORA_SAVE_LM_HEAD = 2 };
// "embed_tokens,lm_head" (or embed, head) → LORA_SAVE_* bits; fails naming the unknown module.
uint32_t lora_parse_saves(const std::string& list);
// The bits as trained on `cfg`: with tied embeddings either one means the one shared tensor, so both.
uint32_t lora_saves(const ModelConfig& cfg, uint32_t bits);
// "embed_tokens,lm_head", "embed_tokens", "lm_head" or "" (none).
std::string lora_saves_string(uint32_t bits);

// in/out features of a target's base weight.
void lora_target_shape(const ModelConfig& cfg, LoraTarget t, int& in, int& out);

// The projections of a layer that read the same input, as the layer runs them together (model/layer.cpp:
// q, k, v; o; gate, up; down), each group in target order.
constexpr int kNumLinearGroups = 4;
extern const std::vector<LoraTarget> kLinearGroups[kNumLinearGroups];

struct LoraLayout {
    // Offsets into the adapter buffer, SIZE_MAX where the target is not adapted.
    // m: DoRA's magnitude vector [out] (SIZE_MAX without DoRA).
    std::vector<size_t> a, b, m;  // [layer * LORA_NUM_TARGETS + target]
    // modules_to_save: the trained copies of the embedding and the LM head after every adapter
    // (SIZE_MAX when not trained; with tied embeddings one tensor, embed == lm_head).
    size_t embed = SIZE_MAX, lm_head = SIZE_MAX;
    // For the optimizer: decay on A, B, the magnitudes and the saved modules, as PEFT + HF Trainer do
    // (their rule leaves out only biases and norms).
    std::vector<TensorInfo> tensors;
    size_t total = 0;
    size_t A(int layer, int t) const { return a[(size_t)layer * LORA_NUM_TARGETS + t]; }
    size_t B(int layer, int t) const { return b[(size_t)layer * LORA_NUM_TARGETS + t]; }
    size_t M(int layer, int t) const { return m[(size_t)layer * LORA_NUM_TARGETS + t]; }
};
LoraLayout lora_layout(const ModelConfig& cfg, const LoraConfig& lc);

// DoRA's activations per layer (model/linear.h, DoraActs) hold each DoRA projection's columns in
// target order: the columns before target t (LORA_NUM_TARGETS: all of them; 0 without DoRA).
size_t dora_offset(const ModelConfig& cfg, const LoraConfig& lc, int t);
// The columns of the widest group of DoRA projections as the layer forms its groups (q, k, v; o;
// gate, up; down): the backward's dz scratch is N times it.
size_t dora_group_width(const ModelConfig& cfg, const LoraConfig& lc);

// Whether LoRA+ trains a tensor at the higher learning rate: an adapter's B, and DoRA's magnitudes
// (PEFT's create_loraplus_optimizer puts every 1-D parameter there).
bool lora_is_b(const TensorInfo& t);
// Whether a trainable tensor is a saved module's copy (the embedding or the LM head): --embedding-lr.
bool lora_is_saved_module(const TensorInfo& t);

// PEFT's init: A ~ kaiming_uniform(a=√5), i.e. U(−1/√in, 1/√in); B = 0, so training starts at the
// base model. DoRA's magnitudes and the saved modules are left 0 here: they start at the base
// weights' row norms and the base tensors, which model_add_lora sets (model.h).
void lora_init(const ModelConfig& cfg, const LoraConfig& lc, std::vector<float>& adapters, uint64_t seed);

// W += scale · B A for every adapted weight (with DoRA then each row of it scaled to its magnitude,
// W_j = m_j · W_j / ‖W_j‖), and the saved modules' copies put in place of the base tensors:
// afterwards the base alone gives the adapted model.
void lora_merge(const ModelConfig& cfg, const LoraConfig& lc, const std::vector<float>& adapters, std::vector<float>& params);

// adapter .lora: magic "LLMA", version, the LoraConfig, the base config's hash and layer count,
// then A and B (and with DoRA the magnitude) of each adapted weight, then the saved modules, in
// layout order (FP32). Version 1 files (before DoRA: a LoraConfig without use_dora) and version 2
// (before modules_to_save) still load.
void lora_save(const std::string& path, const ModelConfig& cfg, const LoraConfig& lc, const std::vector<float>& adapters);
void lora_load(const std::string& path, const ModelConfig& cfg, LoraConfig& lc, std::vector<float>& adapters);

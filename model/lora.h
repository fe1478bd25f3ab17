// LoRA adapters (Hu et al. 2021): for each targeted linear layer W [out, in] of each decoder layer,
// A [r, in] and B [out, r] in one flat buffer, so the optimizer and the files see one array.
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/weights.h"

enum LoraTarget { LORA_Q, LORA_K, LORA_V, LORA_O, LORA_GATE, LORA_UP, LORA_DOWN, LORA_NUM_TARGETS };
extern const char* const kLoraTargetNames[LORA_NUM_TARGETS];  // "q", "k", "v", "o", "gate", "up", "down"

// The fixed-size part of a LoraConfig, as .lora files store it (each version a prefix of the next).
struct LoraScalars {
    int32_t rank = 8;
    float alpha = 16.0f;
    float dropout = 0.0f;
    int32_t use_rslora = 0;                                         // scale alpha/sqrt(r) instead of alpha/r
    uint32_t targets = (1u << LORA_Q) | (1u << LORA_K) | (1u << LORA_V) | (1u << LORA_O);  // bitmask
    int32_t use_dora = 0;  // DoRA: each adapted weight also has a trained magnitude per output row (kernels.h)
    // PEFT's modules_to_save: base tensors trained in full beside the adapters, as a copy of the base
    // (LORA_SAVE_* bits). A tied model's embedding is its LM head: both bits or neither (lora_saves).
    uint32_t save_modules = 0;
};

// The two tables whose rows trainable tokens replace (LoraConfig::tokens, LoraLayout::tokens).
enum LoraTable { LORA_TABLE_EMBED, LORA_TABLE_LM_HEAD, LORA_NUM_TABLES };

struct LoraConfig : LoraScalars {
    // PEFT's trainable_token_indices: token ids whose rows of the embedding [LORA_TABLE_EMBED] and of
    // the LM head [LORA_TABLE_LM_HEAD] are trained beside the adapters, k rows of dim instead of the
    // whole table (modules_to_save): the few new or untrained special tokens a chat template brings.
    // A tied model's one table has its ids in [LORA_TABLE_EMBED] alone (lora_check_tokens).
    std::vector<int32_t> tokens[LORA_NUM_TABLES];
    // PEFT's layers_to_transform: the decoder layers that get adapters, ascending (empty: every layer).
    std::vector<int32_t> layers;
    float scale() const;
    bool has(LoraTarget t) const { return targets >> t & 1u; }
    bool has_layer(int l) const { return layers.empty() || std::binary_search(layers.begin(), layers.end(), l); }
    // Whether layer l's projection t has an adapter.
    bool adapts(int l, LoraTarget t) const { return has(t) && has_layer(l); }
    bool has_tokens() const { return !tokens[LORA_TABLE_EMBED].empty() || !tokens[LORA_TABLE_LM_HEAD].empty(); }
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

// A comma list of token ids or of tokens as the vocabulary stores them ("<|im_end|>", "128009")
// into ids, `lookup` giving a token's id or -1; fails naming the item that is neither.
std::vector<int32_t> lora_parse_tokens(const std::string& list, const std::function<int32_t(const std::string&)>& lookup);
// Fails, naming `where`, unless every table's ids are distinct and inside the vocabulary, neither
// table is a saved module too, and a tied model's LM head lists the embedding's ids or none (the one
// table holds one row per id: a list equal to the embedding's is dropped).
void lora_check_tokens(const ModelConfig& cfg, LoraConfig& lc, const std::string& where);
// The trainable tokens whose rows the pass through table t trains: a tied model's LM head is its
// embedding, so the head's are the embedding's.
inline const std::vector<int32_t>& lora_table_tokens(const ModelConfig& cfg, const LoraConfig& lc, int t) {
    return cfg.tied_embeddings ? lc.tokens[LORA_TABLE_EMBED] : lc.tokens[t];
}
// "3 tokens (embed_tokens, lm_head)", for logs.
std::string lora_tokens_string(const ModelConfig& cfg, const LoraConfig& lc);

// "0-3,10,20-23" (layer indices and ranges) into ascending distinct layers, "all" into none (every
// layer); fails naming the item.
std::vector<int32_t> lora_parse_layers(const std::string& list);
// Fails, naming `where`, unless the layers ascend, differ and are below cfg.n_layers.
void lora_check_layers(const ModelConfig& cfg, const LoraConfig& lc, const std::string& where);
// "0-3,10" for logs and signatures ("all" when empty).
std::string lora_layers_string(const std::vector<int32_t>& layers);

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
    // Trainable tokens: each table's rows of LoraConfig::tokens [k, dim] after the saved modules
    // (SIZE_MAX when none; with tied embeddings tokens[LORA_TABLE_LM_HEAD] == tokens[LORA_TABLE_EMBED]).
    size_t tokens[LORA_NUM_TABLES] = {SIZE_MAX, SIZE_MAX};
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
// Whether a trainable tensor is a saved module's copy (the embedding or the LM head).
bool lora_is_saved_module(const TensorInfo& t);
// Whether a trainable tensor is a table's trainable token rows.
bool lora_is_token_rows(const TensorInfo& t);

// PEFT's init: A ~ kaiming_uniform(a=√5), i.e. U(−1/√in, 1/√in); B = 0, so training starts at the
// base model. DoRA's magnitudes, the saved modules and the trainable tokens are left 0 here: they
// start at the base weights' row norms, the base tensors and rows, which model_add_lora sets (model.h).
void lora_init(const ModelConfig& cfg, const LoraConfig& lc, std::vector<float>& adapters, uint64_t seed);

// W += scale · B A for every adapted weight (with DoRA then each row of it scaled to its magnitude,
// W_j = m_j · W_j / ‖W_j‖), and the saved modules' copies and the trainable tokens' rows put in place
// of the base tensors and rows: afterwards the base alone gives the adapted model.
void lora_merge(const ModelConfig& cfg, const LoraConfig& lc, const std::vector<float>& adapters, std::vector<float>& params);

// adapter .lora: magic "LLMA", version, the LoraScalars, the base config's hash and layer count,
// (version 4:) each table's count of trainable tokens and their ids (int32), (version 5:) the count
// of adapted layers (0: all) and their indices, then the adapter values (FP32) in layout order: A and
// B (and with DoRA the magnitude) of each adapted weight, the saved modules, the token rows. Version 1
// files (before DoRA: no use_dora), 2 (before modules_to_save), 3 (before trainable tokens) and 4
// (before some layers only) still load.
void lora_save(const std::string& path, const ModelConfig& cfg, const LoraConfig& lc, const std::vector<float>& adapters);
void lora_load(const std::string& path, const ModelConfig& cfg, LoraConfig& lc, std::vector<float>& adapters);

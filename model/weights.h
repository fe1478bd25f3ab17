// The parameter layout of a model (every tensor's name, shape and offset in one flat buffer) and
// the model .bin file. Tensor names are Hugging Face's, so converters map names one to one.
//
// Order in the flat buffer and in the file (DESIGN.md §5):
//   model.embed_tokens.weight                        [vocab, dim]
//   for each layer i: model.layers.i.
//     input_layernorm.weight                         [dim]
//     self_attn.q_proj.weight [q_dim, dim]  (+ .bias [q_dim] when qkv_bias)
//     self_attn.k_proj.weight [kv_dim, dim] (+ .bias [kv_dim])
//     self_attn.v_proj.weight [kv_dim, dim] (+ .bias [kv_dim])
//     self_attn.o_proj.weight                        [dim, q_dim]
//     self_attn.q_norm.weight, k_norm.weight         [head_dim] each (when qk_norm: Qwen3, Gemma 3)
//     post_attention_layernorm.weight                [dim]  (the MLP's input norm)
//   or with post_norms (Gemma 3), where post_attention_layernorm normalises the attention's output:
//     post_attention_layernorm.weight, pre_feedforward_layernorm.weight (the MLP's input norm) [dim]
//     mlp.gate_proj.weight                           [ffn, dim]
//     mlp.up_proj.weight                             [ffn, dim]
//     mlp.down_proj.weight                           [dim, ffn]
//     post_feedforward_layernorm.weight              [dim]  (post_norms)
//   model.norm.weight                                [dim]
//   lm_head.weight                                   [vocab, dim]   (absent when tied)
// Linear weights are [out, in] (PyTorch's layout): y = x Wᵀ.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/config.h"

enum class DType : uint32_t { F32 = 0, BF16 = 1 };

struct TensorInfo {
    std::string name;
    std::vector<int64_t> shape;
    size_t offset = 0;  // in floats, into the flat buffer
    size_t numel = 0;
    bool decay = true;  // AdamW weight decay applies (not to norms and biases)
};

struct ParamLayout {
    std::vector<TensorInfo> tensors;
    size_t total = 0;
    const TensorInfo* find(const std::string& name) const;  // nullptr when absent
};

ParamLayout param_layout(const ModelConfig& cfg);
// The layout of cfg's layers, or of its first ones only when a file of n_tensors tensors could not
// hold them all: the importers check a file's tensors against it before trusting a layer count read
// from the file, which must not build a layout of billions of entries. Capped, it holds more tensors
// than the file (a layer more than n_tensors could fill), so the check finds one missing, the same one
// the whole layout would name first.
ParamLayout param_layout_within(const ModelConfig& cfg, size_t n_tensors);

// Offsets of one layer's tensors inside the flat buffer (biases, QK-norm and post-norm weights:
// SIZE_MAX when absent). mlp_norm is the MLP's input norm, whatever its name.
struct LayerOffsets {
    size_t attn_norm, wq, wk, wv, bq, bk, bv, wo, q_norm, k_norm, post_attn_norm, mlp_norm, w_gate, w_up, w_down,
        post_mlp_norm;
    // The weight of projection t in LoraTarget order (q, k, v, o, gate, up, down).
    size_t projection(int t) const {
        const size_t w[7] = {wq, wk, wv, wo, w_gate, w_up, w_down};
        return w[t];
    }
    // Every field, for code that moves all of them (the NF4 base's repacking).
    std::vector<size_t*> all() {
        return {&attn_norm, &wq, &wk,     &wv,     &bq,   &bk,     &bv,          &wo,
                &q_norm,    &k_norm, &post_attn_norm, &mlp_norm, &w_gate, &w_up, &w_down, &post_mlp_norm};
    }
};
struct ModelOffsets {
    size_t embed, final_norm, lm_head;  // lm_head == embed when tied
    std::vector<LayerOffsets> layers;
};
ModelOffsets model_offsets(const ModelConfig& cfg);

// Phi-3's checkpoints (ModelConfig::fused_projections) store some projections of a layer as one
// tensor, their rows one after another: q, k, v as self_attn.qkv_proj, gate, up as mlp.gate_up_proj.
// Projection t (LoraTarget order: q, k, v, o, gate, up, down) is then rows [row0, row0 + rows) of the
// layer's `module`, which holds `total` rows and `count` projections, this one the `index`-th.
// Another model's projections, and o and down: module null (stored as they are).
struct FusedPart {
    const char* module = nullptr;  // "self_attn.qkv_proj" or "mlp.gate_up_proj"
    int64_t row0 = 0, rows = 0, total = 0;
    int index = 0, count = 1;
    int first = 0;  // the first projection of the module (LoraTarget order)
};
FusedPart fused_part(const ModelConfig& cfg, int t);
// The tensor a checkpoint stores for layout tensor t: t itself, or the fused tensor that holds it
// ("model.layers.3.self_attn.k_proj.weight" → "...qkv_proj.weight": its name, shape [part.total, in]
// and size; the offset stays t's), with its part.
TensorInfo stored_tensor(const ModelConfig& cfg, TensorInfo t, FusedPart& part);

// model .bin: magic "LLMB", version (model_file_version: each config lacks only the later fields;
// version 1, from before the RoPE scaling fields, still reads), the config, dtype, tensor count,
// then the tensors in layout order, each 64-byte aligned. F32 or BF16 on disk; always FP32 in memory
// on the CPU backend.
// The oldest version that holds the config: 6 with Phi-3's fields, 5 with Gemma 3's fields or a sliding window, 4 with
// NoPE layers, 3 with QK-norm, else 2.
uint32_t model_file_version(const ModelConfig& cfg);
void model_save(const std::string& path, const ModelConfig& cfg, const std::vector<float>& params, DType dtype);
// The same from a reader of tensor i of param_layout(cfg) (ImportedModel::read_tensor): one tensor in
// memory at a time.
void model_save(const std::string& path, const ModelConfig& cfg, const std::function<void(size_t, float*)>& read_tensor,
                DType dtype);
void model_load(const std::string& path, ModelConfig& cfg, std::vector<float>& params);
// A model .bin opened for reading tensor by tensor: the header read and every tensor's place checked
// against the file's size (a truncated file names the first tensor it cuts, trailing bytes fail)
// before anything is allocated; each tensor read when asked for (pread, not a mapping: a file cut
// short meanwhile is an error, where a mapping would die of SIGBUS). model_load reads them all; the
// QLoRA loader (model_load_nf4) quantizes one at a time, so a 65B model is never whole in FP32.
// A Hugging Face directory or a GGUF file given as a model is imported instead (model/import.h:
// model_is_imported), read a tensor at a time as ./convert would write it.
struct ModelFile {
    std::string path;
    int fd = -1;
    std::function<void(size_t, float*)> imported;  // an imported model's tensor reader; empty for a .bin
    ModelConfig cfg;
    ParamLayout layout;
    DType dtype = DType::F32;
    std::vector<size_t> at;  // each tensor's byte offset in the file, layout order
    explicit ModelFile(const std::string& path);
    ~ModelFile();
    ModelFile(const ModelFile&) = delete;
    ModelFile& operator=(const ModelFile&) = delete;
    void read(size_t ti, float* dst) const;  // tensor ti (layout.tensors[ti]) as FP32
};
// Only the header: for tools that need the shape (memory estimator, adapters).
ModelConfig model_read_config(const std::string& path);

// Random initialisation as HF does for LLaMA: normal(0, 0.02) for matrices, ones for norms, zero bias.
void model_init_random(const ModelConfig& cfg, std::vector<float>& params, uint64_t seed);
// Tensor ti of the layout as model_init_random fills it (norms 1, biases 0, weights N(0, 0.02²)).
void init_random_tensor(const TensorInfo& t, size_t ti, float* p, uint64_t seed);

// What an exporter checks before it writes `where`: the config is valid, params has its size, the
// tokenizer's n_tokens fit the embedding, and every weight is finite (else it fails naming the
// tensor and index of the first NaN or infinity), so that no broken model goes out to other tools.
void check_exportable(const ModelConfig& cfg, const std::vector<float>& params, size_t n_tokens, const std::string& where);

// BF16 rounding (round-to-nearest-even), used by files and later by the CUDA backend.
uint16_t f32_to_bf16(float f);
float bf16_to_f32(uint16_t h);
